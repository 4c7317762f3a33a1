"""Generation shared by `llava-pose chat` and the benchmark's ``hf:`` answerer.

One function, `generate`, renders prompts, batches them (left padding), generates and decodes.
LLaVA checkpoints are prompted with the exact Vicuna-v1 template used in training (and by
LLaVA-1.5's own evaluation), their images padded to a square like in training. Any other
transformers vision-language model is loaded with AutoModelForImageTextToText and prompted
through its processor's chat template (best effort: models whose processors need more than
text + images may not work).

`HFBackend` is the ``hf:MODEL`` backend of the LLM layer. The Runner's concurrent calls are
gathered by a micro-batcher into one `generate` per batch, run in a worker thread so that the
event loop stays free. It is a cached, free backend in the Runner's sense: its answers are cached
and a rerun resumes; the cache key includes a fingerprint of the checkpoint's files, so
retraining into the same folder never serves the old model's answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, InputError, LlavaPoseError
from ..llm.base import Backend, PermanentError
from ..records import ChatRequest, Completion
from .config import TEMPLATES
from .data import GPT, HUMAN, Template, load_image, mean_colour, move_image_token_first

log = logging.getLogger("llava_pose.train")


@dataclass
class Loaded:
    """A model ready to generate, and how to prompt it."""

    name: str
    model: Any
    processor: Any
    template: str  # "vicuna_v1" or "chat"
    is_llava: bool
    device: Any


@dataclass
class Conversation:
    """Turns ("user"/"assistant", text) ending with a user turn, one optional image."""

    turns: list[tuple[str, str]]
    image: Any = None  # a path or a PIL image
    system: str | None = None


@dataclass
class Generated:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" or "length"


def resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU here")
    return resolved


def resolve_dtype(dtype: str, device: Any) -> Any:
    import torch

    names = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in names:
        raise ConfigError(f"dtype {dtype!r}: expected auto, bf16, fp16 or fp32")
    return names[dtype]


def load(name: str, *, device: str = "auto", dtype: str = "auto", template: str = "auto") -> Loaded:
    """Load a run, checkpoint, LoRA run, exported model or hub id for generation."""
    from .model import load_pretrained

    if template not in TEMPLATES:
        raise ConfigError(f"template {template!r}: expected one of {', '.join(TEMPLATES)}")
    dev = resolve_device(device)
    model, processor = load_pretrained(name, dtype=resolve_dtype(dtype, dev), device=dev)
    is_llava = getattr(model.config, "model_type", "") == "llava"
    if template == "auto":
        template = "vicuna_v1" if is_llava else "chat"
    if template == "chat" and not getattr(processor, "chat_template", None):
        raise ConfigError(f"{name}: its processor has no chat template; use --template vicuna_v1")
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return Loaded(name, model, processor, template, is_llava, dev)


def render_prompt(loaded: Loaded, conversation: Conversation) -> str:
    """The prompt text for the next assistant turn."""
    has_image = conversation.image is not None
    if loaded.template == "vicuna_v1":
        template = Template.load("vicuna_v1")
        turns: list[tuple[str, str | None]] = []
        for i, (role, text) in enumerate(conversation.turns):
            if i == 0 and has_image:
                text = move_image_token_first(
                    text if template.image_token in text else f"{template.image_token}\n{text}"
                )
            turns.append((HUMAN if role == "user" else GPT, text))
        turns.append((GPT, None))
        return template.render(turns, conversation.system)[0]
    messages: list[dict[str, Any]] = []
    if conversation.system:
        messages.append(
            {"role": "system", "content": [{"type": "text", "text": conversation.system}]}
        )
    for i, (role, text) in enumerate(conversation.turns):
        parts: list[dict[str, Any]] = [{"type": "image"}] if i == 0 and has_image else []
        messages.append({"role": role, "content": [*parts, {"type": "text", "text": text}]})
    return loaded.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


def _image(loaded: Loaded, image: Any) -> Any:
    if not isinstance(image, str | Path):
        return image
    if not Path(image).is_file():
        raise InputError(image, "image not found")
    # llava checkpoints saw square-padded images in training (LLaVA-1.5's 'pad'), others did not
    return load_image(
        str(image), mean_colour(loaded.processor.image_processor) if loaded.is_llava else None
    )


def generate(
    loaded: Loaded,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    seed: int | None = None,
    streamer: Any = None,
) -> list[Generated]:
    """Answer the last user turn of every conversation, all in one batch (greedy unless
    temperature > 0). A streamer, if given, sees the tokens of a batch of one as they come."""
    import torch

    prompts = [render_prompt(loaded, c) for c in conversations]
    images = [_image(loaded, c.image) for c in conversations if c.image is not None]
    inputs = loaded.processor(
        text=prompts, images=images or None, padding=True, return_tensors="pt"
    )
    inputs = inputs.to(loaded.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.model.dtype)
    tokenizer = loaded.processor.tokenizer
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "do_sample": temperature > 0,
    }
    if temperature > 0:
        options.update(temperature=temperature, top_p=1.0, top_k=0)
        if seed is not None:
            torch.manual_seed(seed)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    if streamer is not None:
        options["streamer"] = streamer
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, **options)
    new = output[:, inputs["input_ids"].shape[1] :]
    results = []
    for row, prompt_mask in zip(new.tolist(), inputs["attention_mask"].tolist(), strict=True):
        stop = next((i for i, t in enumerate(row) if t == tokenizer.eos_token_id), None)
        tokens = row[:stop] if stop is not None else [t for t in row if t != tokenizer.pad_token_id]
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        finish = "stop" if stop is not None or len(tokens) < max_new_tokens else "length"
        results.append(
            Generated(text, int(sum(prompt_mask)), len(tokens) + (stop is not None), finish)
        )
    return results


# -- chat ---------------------------------------------------------------------------------------


def run_chat(cfg: Any) -> int:
    """`llava-pose chat`: one image, questions asked in turn, answers streamed to stdout."""
    from transformers import TextStreamer

    if cfg.image is not None and not Path(cfg.image).is_file():
        raise InputError(cfg.image, "image not found")
    loaded = load(cfg.model, device=cfg.device, dtype=cfg.dtype, template=cfg.template)
    interactive = not cfg.questions
    if interactive and sys.stdin.isatty():
        print("Ask about the image; an empty line or Ctrl-D ends the chat.", file=sys.stderr)
    history: list[tuple[str, str]] = []
    questions = iter(cfg.questions) if not interactive else _stdin_questions()
    for question in questions:
        print(f"USER: {question}\nASSISTANT: ", end="", flush=True)
        streamer = TextStreamer(
            loaded.processor.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        conversation = Conversation([*_flatten(history), ("user", question)], cfg.image, cfg.system)
        answer = generate(
            loaded,
            [conversation],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            streamer=streamer,
        )[0]
        print(flush=True)
        history.append((question, answer.text))
    return 0


def _flatten(history: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [turn for q, a in history for turn in (("user", q), ("assistant", a))]


def _stdin_questions() -> Any:
    while True:
        if sys.stdin.isatty():
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip():
            return
        yield line.strip()


# -- the hf: backend ----------------------------------------------------------------------------


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
    adapter_base = path / "base-model"
    if adapter_base.is_dir():
        digest.update(fingerprint(str(adapter_base)).encode())
    return digest.hexdigest()[:12]


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future[Completion]


class HFBackend(Backend):
    """``hf:PATH_OR_HUB_ID``: a local transformers vision-language model answers (bench answer).

    Options: device, dtype, batch_size (requests per generate call), max_new_tokens (when a
    request sets none), template (auto/vicuna_v1/chat), batch_wait_ms (how long the batcher
    waits for more requests after the first).
    """

    provider = "hf"
    cached = True  # GPU time: cached like API calls, so an interrupted benchmark resumes
    free = True  # no per-token price
    options = ("device", "dtype", "batch_size", "max_new_tokens", "template", "batch_wait_ms")

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 1024,
        template: str = "auto",
        batch_wait_ms: float = 20.0,
    ) -> None:
        super().__init__(model)
        if batch_size < 1:
            raise ConfigError("hf backend: batch_size must be at least 1")
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.template = template
        self.batch_wait = batch_wait_ms / 1000
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
