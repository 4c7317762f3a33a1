"""The contract every language-model backend fulfils: one async method that makes the raw call.

Concurrency, retries, rate limits, caching and cost live in `runner.Runner`, written once for
the teacher, the benchmark answerer and the judge alike. A backend only translates a
`ChatRequest` into its provider's call and the reply into a `Completion`, and sorts failures
into the three kinds below so the runner knows what to do with them.
"""

from __future__ import annotations

import abc
import contextlib
import email.utils
import functools
import importlib
import importlib.util
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from ..errors import BackendError, ConfigError, display_url, register_secret, register_userinfo
from ..records import ChatRequest, Completion

__all__ = [
    "Backend",
    "BackendError",
    "ConnectionFailed",
    "PermanentError",
    "RetryableError",
    "SDKBackend",
    "UsageError",
    "parse_retry_after",
    "usage_count",
]


class RetryableError(Exception):
    """A transient failure (429, 5xx, timeout, dropped connection, malformed body): try again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionFailed(RetryableError):
    """The server could not be reached at all (refused, no such host): before any call has
    succeeded this is a wrong --base-url or a server not started, not a blip."""


class UsageError(RetryableError):
    """A reply whose reported token usage cannot be true: malformed, and of unknown cost."""


def usage_count(usage: Mapping[str, object], name: str) -> int:
    """One token count of a reply's usage: absent is 0; anything but a whole number >= 0
    (a string, a bool, a float, a negative) makes the reply malformed."""
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"malformed response: usage.{name} is {value!r}, not a token count")
    return value


def connection_reason(error: BaseException) -> str | None:
    """'connection refused', 'no such host', ... from an SDK connection error's cause; None
    when no cause says the server could not be reached."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "no such host"
        text = str(cause).lower()
        for needle, reason in _CONNECT_REASONS:
            if needle in text:
                return reason
        cause = cause.__cause__ or cause.__context__
    return None


_CONNECT_REASONS = (
    ("refused", "connection refused"),
    ("name or service not known", "no such host"),
    ("nodename nor servname", "no such host"),
    ("temporary failure in name resolution", "no such host"),
    ("no address associated", "no such host"),
    ("getaddrinfo", "no such host"),
    ("unreachable", "network unreachable"),
)


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

    def warm(self) -> None:  # noqa: B027 - optional hook
        """Load now what the first call would wait for (an SDK and its client), while
        something else runs: see `prompts.build_requests`' `meanwhile`."""

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


def aiohttp_usable(sdk: Any, base_url: str | None = None) -> bool:
    """Whether the SDK's aiohttp transport can carry the calls: the SDK offers it, aiohttp is
    installed, no proxy is configured (aiohttp ignores HTTP(S)_PROXY, which httpx obeys) and
    the URL carries no user:password (the adapter rejects it where httpx sends basic auth).
    It costs half the CPU of the default httpx transport a call (~2.9 ms against ~4.8 ms on
    a paper-format prompt: httpx's pool scans every connection on each request), CPU that
    64 calls in flight otherwise queue for. ``LLAVA_POSE_HTTP=httpx`` keeps httpx."""
    import urllib.parse
    import urllib.request  # (after the SDK, which has imported most of it)

    if os.environ.get("LLAVA_POSE_HTTP", "").lower() == "httpx":
        return False
    if not hasattr(sdk, "DefaultAioHttpClient") or urllib.request.getproxies():
        return False
    if base_url and urllib.parse.urlsplit(base_url).username is not None:
        return False
    return importlib.util.find_spec("aiohttp") is not None


class SDKBackend(Backend):
    """A provider reached through its official SDK: key and URL resolution, error sorting and
    the client's life cycle, written once. Subclasses name their SDK module, environment
    variables and client class, and implement `_call(client, request)`."""

    options = ("base_url", "api_key", "key_env", "timeout", "need_key")
    sdk: str = ""  # module name: "openai" or "anthropic"
    client_class: str = ""  # e.g. "AsyncOpenAI"
    key_var: str = ""  # default environment variable of the key
    url_var: str = ""  # environment variable of the base URL
    default_host: str = ""
    # The header the SDK sends the key in: a URL's user:password goes as HTTP Basic in
    # ``authorization``, so a key sent there too would be replaced (see `register_userinfo`).
    key_header: str = "authorization"
    # A local server of this API needs no key (OpenAI-compatible ones); the SDK gets a dummy.
    keyless_with_base_url: bool = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        key_env: str | None = None,
        timeout: float = 120.0,
        need_key: bool = True,
        **client_args: Any,
    ) -> None:
        super().__init__(model)
        self.base_url = base_url or os.environ.get(self.url_var) or None
        self.key_env = key_env or self.key_var
        key = api_key or os.environ.get(self.key_env)
        if not key:
            if need_key and not (self.keyless_with_base_url and self.base_url):
                local = (
                    " (or pass --base-url for a local server, which needs none)"
                    if self.keyless_with_base_url
                    else ""
                )
                raise ConfigError(f"{self.provider}: no API key: set {self.key_env}{local}")
            key = "not-needed"  # local servers ignore it, the SDK insists on one
        else:
            register_secret(key)
        basic = register_userinfo(self.base_url)
        if basic and key != "not-needed" and self.key_header == "authorization":
            raise ConfigError(
                f"--base-url carries user:password, sent as HTTP Basic in the Authorization "
                f"header, where the {self.provider} API key in {self.key_env} goes too: a "
                f"server reads one. For a proxy that takes Basic auth, unset {self.key_env}; "
                "for the key, drop user:password from the URL"
            )
        self.shown_url = display_url(self.base_url)
        # The runner owns retries and timeouts; the SDK must not retry behind its back.
        self._client_args = {
            "api_key": key,
            "base_url": self.base_url,
            "timeout": timeout,
            "max_retries": 0,
            **{k: v for k, v in client_args.items() if v is not None},
        }
        self._client: Any = None  # made per event loop, closed by the runner at the end of a run

    @functools.cached_property
    def _sdk(self) -> Any:
        """The provider's SDK module, imported when first needed (openai: ~1 s), so a dry run,
        which never calls, never pays for it."""
        return importlib.import_module(self.sdk)

    def describe(self) -> str:
        return f"{self.spec} at {self.shown_url or self.default_host}"

    def _new_client(self) -> Any:
        args = dict(self._client_args)
        if aiohttp_usable(self._sdk, self.base_url):
            with contextlib.suppress(RuntimeError):  # an aiohttp too old for the SDK's adapter
                args["http_client"] = self._sdk.DefaultAioHttpClient(timeout=args["timeout"])
        return getattr(self._sdk, self.client_class)(**args)

    def warm(self) -> None:
        """Import the SDK (openai: ~1 s) and make the client (~50 ms: its TLS context). A
        failure here is left for the first call, which sorts it like any other.

        Both SDKs find the platform (for their headers) in a thread at their first call, which
        every worker started meanwhile waits on (and the thread pool's import, ~65 ms): it is
        found here instead, where an SDK without that attribute is left as it is."""
        with contextlib.suppress(Exception):
            if self._client is None:
                self._client = self._new_client()
            if getattr(self._client, "_platform", 0) is None:
                found = importlib.import_module(f"{self.sdk}._base_client").get_platform()
                self._client._platform = found

    def request_body(self, request: ChatRequest, image_urls: list[str] | None = None) -> Any:
        """The JSON body the call (or a batch item) posts for `request`: its image files read
        and encoded, or `image_urls` standing in for them (what ``generate --dry-run --show``
        prints)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def _call(self, client: Any, request: ChatRequest) -> Any:
        """Send `request` with the SDK client; return the raw body."""

    @abc.abstractmethod
    def _parse(self, body: Any) -> Completion:
        """The provider's reply body as a Completion (pure)."""

    async def complete(self, request: ChatRequest) -> Completion:
        sdk = self._sdk
        try:
            if self._client is None:
                self._client = self._new_client()
            body = await self._call(self._client, request)
        except sdk.APIStatusError as e:
            raise classify_http_error(
                e.status_code,
                sdk_error_message(e),
                e.response.headers,
                model=self.model,
                key_env=self.key_env,
            ) from None
        except sdk.APIConnectionError as e:
            reason = connection_reason(e)
            # aiohttp's adapter reports a refused connection as a connect timeout: the cause
            # decides, not the class
            if reason is None and isinstance(e, sdk.APITimeoutError):
                raise RetryableError("connection problem: APITimeoutError") from None
            raise ConnectionFailed(reason or type(e).__name__) from None
        except (sdk.APIResponseValidationError, ValueError) as e:
            raise RetryableError(f"malformed response: {type(e).__name__}") from None
        if isinstance(body, str):  # some SDK versions hand back non-JSON bodies as text
            raise RetryableError("malformed response: body is not JSON")
        return self._parse(body)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
