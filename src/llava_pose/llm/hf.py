"""The ``hf:PATH_OR_HUB_ID`` backend: a local transformers vision-language model answers
benchmark questions (`bench answer`), beside the OpenAI and Anthropic backends.

The Runner's concurrent calls are gathered by a micro-batcher into one `generate` per batch
(`llava_pose.vlm.generate`, the same function `llava-pose chat` uses), run in a worker thread
so that the event loop stays free. It is a cached, free backend in the Runner's sense: its
answers are cached and a rerun resumes; the cache key includes a fingerprint of the
checkpoint's files, so retraining into the same folder never serves the old model's answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, LlavaPoseError
from ..records import ChatRequest, Completion
from ..vlm.generate import TEMPLATES, Conversation, Generated, Loaded, generate, load
from ..vlm.load import BASE_DIR, DTYPES
from .base import Backend, PermanentError


@dataclass(frozen=True)
class HFOptions:
    """What an hf: model takes besides the request (bench answer's --device, --dtype,
    --batch-size, --template); an option outside its range is a one-line error."""

    device: str = "auto"  # cpu, cuda, cuda:1, ... (auto: cuda if available)
    dtype: str = "auto"  # one of DTYPES
    batch_size: int = 8  # requests per generate call
    max_new_tokens: int = 1024  # when a request sets none
    template: str = "auto"  # one of TEMPLATES
    batch_wait_ms: float = 20.0  # how long the batcher waits for more requests after the first

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("hf backend: batch_size must be at least 1")
        if self.max_new_tokens < 1:
            raise ConfigError("hf backend: max_new_tokens must be at least 1")
        if self.batch_wait_ms < 0:
            raise ConfigError("hf backend: batch_wait_ms must not be negative")
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"hf backend: dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}"
            )
        if self.template not in TEMPLATES:
            raise ConfigError(
                f"hf backend: template {self.template!r}: expected one of {', '.join(TEMPLATES)}"
            )


def fingerprint(name: str) -> str:
    """12 hex digits naming these exact weights: file names, sizes and modification times of a
    local folder (or of the hub snapshot in the cache); the name alone if neither is found."""
    path = Path(name)
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(name, local_files_only=True))
        except Exception:  # not cached (yet): the id is all there is
            return hashlib.sha256(name.encode()).hexdigest()[:12]
    digest = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        stat = f.stat()
        digest.update(f"{f.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    adapter_base = path / BASE_DIR
    if adapter_base.is_dir():
        digest.update(fingerprint(str(adapter_base)).encode())
    return digest.hexdigest()[:12]


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future[Completion]


class HFBackend(Backend):
    """``hf:PATH_OR_HUB_ID``: a local transformers vision-language model answers (bench answer).

    Options: `HFOptions`.
    """

    provider = "hf"
    cached = True  # GPU time: cached like API calls, so an interrupted benchmark resumes
    free = True  # no per-token price
    options = tuple(f.name for f in fields(HFOptions))

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        self.settings = HFOptions(**options)
        self.device = self.settings.device
        self.dtype = self.settings.dtype
        self.batch_size = self.settings.batch_size
        self.max_new_tokens = self.settings.max_new_tokens
        self.template = self.settings.template
        self.batch_wait = self.settings.batch_wait_ms / 1000
        self.fingerprint = fingerprint(model)
        self.batches: list[int] = []  # sizes of the generate calls made: batching is observable
        self._loaded: Loaded | None = None
        self._load_lock = threading.Lock()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def spec(self) -> str:
        # the cache key: retrained weights in the same folder are a different model
        return f"hf:{self.model}@{self.fingerprint}"

    def describe(self) -> str:
        return f"{self.spec} (local, batches of up to {self.batch_size})"

    def loaded(self) -> Loaded:
        with self._load_lock:
            if self._loaded is None:
                self._loaded = load(
                    self.model, device=self.device, dtype=self.dtype, template=self.template
                )
            return self._loaded

    async def complete(self, request: ChatRequest) -> Completion:
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._batcher())
        pending = _Pending(request, loop.create_future())
        assert self._queue is not None
        self._queue.put_nowait(pending)
        return await pending.future

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = self._queue = self._loop = None

    async def _batcher(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.batch_wait
            while len(batch) < self.batch_size:
                try:
                    batch.append(
                        await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
                    )
                except asyncio.TimeoutError:
                    break
            groups: dict[tuple[Any, ...], list[tuple[_Pending, Conversation]]] = {}
            for p in batch:
                if p.future.done():  # the Runner timed it out meanwhile
                    continue
                try:
                    conversation = self._conversation(p.request)
                except PermanentError as e:
                    _settle(p.future, error=e)
                    continue
                r = p.request
                key = (
                    r.max_tokens or self.max_new_tokens,
                    r.temperature or 0.0,
                    r.seed if r.temperature else None,
                )
                groups.setdefault(key, []).append((p, conversation))
            for key, group in groups.items():
                await self._run_group(key, group)

    async def _run_group(
        self, key: tuple[Any, ...], group: list[tuple[_Pending, Conversation]]
    ) -> None:
        max_new_tokens, temperature, seed = key
        try:
            results = await asyncio.to_thread(
                self._generate, [c for _, c in group], max_new_tokens, temperature, seed
            )
        except LlavaPoseError as e:  # cannot load the model: no request can succeed
            for p, _ in group:
                _settle(p.future, error=BackendError(str(e)))
            return
        except Exception as e:  # one bad batch must not stop the benchmark
            for p, _ in group:
                _settle(
                    p.future, error=PermanentError(f"generation failed: {type(e).__name__}: {e}")
                )
            return
        for (p, _), g in zip(group, results, strict=True):
            _settle(
                p.future,
                Completion(
                    text=g.text,
                    finish_reason=g.finish_reason,
                    input_tokens=g.input_tokens,
                    output_tokens=g.output_tokens,
                    model=self.model,
                ),
            )

    def _generate(
        self,
        conversations: list[Conversation],
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[Generated]:
        loaded = self.loaded()
        self.batches.append(len(conversations))
        return generate(
            loaded, conversations, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )

    @staticmethod
    def _conversation(request: ChatRequest) -> Conversation:
        system = "\n".join(m.content for m in request.messages if m.role == "system") or None
        turns = [(m.role, m.content) for m in request.messages if m.role != "system"]
        if not turns or turns[-1][0] != "user":
            raise PermanentError("the last message must be from the user")
        if len(request.images) > 1:
            raise PermanentError(f"{len(request.images)} images: one image per question")
        image = request.images[0] if request.images else None
        if image is not None and not Path(image).is_file():
            raise PermanentError(f"image not found: {image}")
        return Conversation(turns, image, system)


def _settle(
    future: asyncio.Future[Completion],
    result: Completion | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
