"""The contract every language-model backend fulfils: one async method that makes the raw call.

Concurrency, retries, rate limits, caching and cost live in `runner.Runner`, written once for
the teacher, the benchmark answerer and the judge alike. A backend only translates a
`ChatRequest` into its provider's call and the reply into a `Completion`, and sorts failures
into the three kinds below so the runner knows what to do with them.
"""

from __future__ import annotations

import abc
import email.utils
import time
from collections.abc import Mapping

from ..errors import BackendError
from ..records import ChatRequest, Completion

__all__ = ["Backend", "BackendError", "PermanentError", "RetryableError", "parse_retry_after"]


class RetryableError(Exception):
    """A transient failure (429, 5xx, timeout, dropped connection, malformed body): try again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """This request can never succeed as sent (e.g. 400 context too long); the others go on."""


class Backend(abc.ABC):
    """A model behind some API. Subclasses set `provider` and implement `complete`."""

    provider: str = ""
    # Calls worth keeping in the cache: all but the instant, deterministic `rules` teacher.
    cached: bool = True
    # No per-token price (local models, rules): costs count as zero, never as "unknown".
    free: bool = False

    def __init__(self, model: str) -> None:
        self.model = model

    @property
    def spec(self) -> str:
        """The `provider:model` string that names this backend (and keys its cache entries)."""
        return f"{self.provider}:{self.model}" if self.model else self.provider

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """Make one call. Raise RetryableError, PermanentError or BackendError (fatal)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> str:
        """One line for the start of a run, e.g. which server is called."""
        return self.spec


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_FIX = {
    401: "the API key was rejected (401): set {key_env} to a valid key",
    403: "permission denied (403): the key cannot use this model or endpoint",
    404: "not found (404): check the model name {model!r} and --base-url",
}


def classify_http_error(
    status: int, message: str, headers: Mapping[str, str] | None, *, model: str, key_env: str
) -> Exception:
    """Sort an HTTP error from any provider into retryable, permanent or fatal.

    Used by every SDK-backed backend, so that all providers retry and fail alike.
    """
    if status == 429:
        if "insufficient_quota" in message:
            return BackendError(
                f"{model}: the account is out of quota (429 insufficient_quota): check billing"
            )
        return RetryableError(f"rate limited (429): {message}", parse_retry_after(headers))
    if status == 402 or "credit balance is too low" in message:
        # Anthropic reports an empty account as a 400 on every request: stop, do not fail each.
        return BackendError(f"{model}: the account is out of credit ({status}): check billing")
    if status in (408, 409, 425) or status >= 500:
        return RetryableError(f"server error ({status}): {message}", parse_retry_after(headers))
    if status in _FIX:
        return BackendError(f"{model}: " + _FIX[status].format(key_env=key_env, model=model))
    return PermanentError(f"rejected ({status}): {message}")


def sdk_error_message(e: object) -> str:
    """The provider's own words from an SDK status error (its `error.code/type` and message)."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            head = err.get("code") or err.get("type") or ""
            return f"{head} {err.get('message') or ''}".strip()
    return str(getattr(e, "message", e))
