"""LLaVA-format records -> what the trainer learns from, as LLaVA-1.5 fine-tunes.

* Records become chat messages (`record_messages`): the image placeholder first in the first
  user turn, as LLaVA's ``preprocess_multimodal`` moves ``<image>`` to the front. The model's
  chat template renders them, the same one `chat` and the hf: answerer ask with (for llava
  the paper's Vicuna v1: package data ``export/llava_1_5_vicuna_v1.jinja``).
* Labels: only what the template marks ``{% generation %}`` (each answer and its end-of-turn
  token) is learned; everything else is -100. TRL's collator makes the batches
  (`sft_dataset`); `Encoder` makes the same labels for the validation pass.
* Images are padded to a square with the image processor's mean colour where the family
  trains so (LLaVA's ``pad`` mode) before the processor resizes them.
* `validate` checks every record before training and says which ones are bad and why.

Records come from files we did not write (LLaVA's mixes, the LLaVA-Pose release), so
`load_records` makes them addressable and safe first:

* **Ids are made unique**, not rejected: the LLaVA-Pose release gives every record of an image
  the same bare id (``"134754"`` five times), and LLaVA itself never reads ids, so rejecting
  would refuse valid data. The first record keeps its id; later ones with the same id become
  ``134754#2``, ``134754#3``, ... in file order (across all ``--data`` files), with a warning.
  A bad record is then named by file, index in the file and unique id.
* **``image`` stays inside the image root** (`llava_pose.paths`): an absolute path or a ``..``
  that climbs out stops the run (`InputError`: file, record, field) before any file is read;
  a symlinked folder inside the root is followed, as the user placed it there.
* **COCO names fall back as in `prepare`**: when ``ROOT/image`` is not there and the file name
  is a COCO one, the image is looked for under its 2017 name (``000000134754.jpg``) and its
  2014 name (``COCO_train2014_000000134754.jpg``), in its folder and then with leading folders
  dropped: the release's ``data/coco/train2014/000000134754.jpg`` is relative to LLaVA's
  repository, and ``--image-root /data/coco`` finds ``/data/coco/train2014/...``.

Nothing here imports torch at module import; tensors are made in TRL's collator.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..coco import image_id_of, image_names, names_2014
from ..errors import ConfigError, InputError
from ..io import read_bytes
from ..paths import inside
from ..vlm.images import load_image

log = logging.getLogger("llava_pose.train")

IGNORE_INDEX = -100
HUMAN, GPT = "human", "gpt"
IMAGE_TOKEN = "<image>"  # where a LLaVA record's image goes in its text


def move_image_token_first(value: str, image_token: str = IMAGE_TOKEN) -> str:
    """LLaVA's preprocess_multimodal: '<image>' leads its turn, followed by a newline."""
    if image_token not in value:
        return value
    return (image_token + "\n" + value.replace(image_token, "").strip()).strip()


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One training conversation, normalized. `image` is an absolute path or None (text-only);
    `id` is unique across the loaded files, `index` is the record's position in its file."""

    id: str
    source: str
    image: str | None
    turns: tuple[tuple[str, str], ...]
    index: int = -1


@dataclass(frozen=True, slots=True)
class Bad:
    """A record the validation pass rejects, and why: file, index in the file, unique id."""

    id: str
    source: str
    reason: str
    index: int = -1

    def __str__(self) -> str:
        return f"{self.source}: [{self.index}] (id {self.id!r}): {self.reason}"

    def row(self) -> dict[str, Any]:
        """The line of ``bad_records.jsonl``."""
        return {"id": self.id, "file": self.source, "index": self.index, "reason": self.reason}


class _UniqueIds:
    """Makes record ids unique in file order (see the module docstring) and says so once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.count: Counter[str] = Counter()
        self.renamed: dict[str, list[tuple[int, str]]] = defaultdict(list)  # file -> (index, id)

    def unique(self, given: str, path: str, index: int) -> str:
        self.count[given] += 1
        if given not in self.seen:
            self.seen.add(given)
            return given
        n = self.count[given]
        while f"{given}#{n}" in self.seen:
            n += 1
        rid = f"{given}#{n}"
        self.seen.add(rid)
        self.renamed[path].append((index, given))
        return rid

    def warn(self) -> None:
        for path, renamed in self.renamed.items():
            index, given = renamed[0]
            log.warning(
                "%s: %d record(s) repeat an earlier record's id (first: [%d], id %r): they are "
                "named %r, %r, ... in file order, so that every report names one record",
                path,
                len(renamed),
                index,
                given,
                f"{given}#2",
                f"{given}#3",
            )


class _ImageFinder:
    """Finds a record's image under one root: ``ROOT/image`` if it is there, else by the COCO
    name fallback of `prepare` (module docstring). Each folder is listed once: a stat per record
    is slow on network disks, and LLaVA's mixes have 665k records."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.listings: dict[Path, set[str] | None] = {}
        self.by_id: dict[Path, dict[int, str]] = {}
        self.fallbacks: list[tuple[str, str]] = []  # (image as given, path found)

    def _names(self, folder: Path) -> set[str] | None:
        if folder not in self.listings:
            try:
                self.listings[folder] = set(os.listdir(folder))
            except OSError:
                self.listings[folder] = None
        return self.listings[folder]

    def find(self, image: str) -> str:
        """The file to open for `image` (already contained), or ``ROOT/image`` when none is
        found, which the image check then reports as not found."""
        # folded lexically, so a symlinked folder cannot be climbed back out of with '..'
        *folders, name = posixpath.normpath(image.replace("\\", "/")).split("/")
        image_id = image_id_of(name)
        for drop in range(len(folders) + 1 if image_id is not None else 1):
            folder = self.root.joinpath(*folders[drop:])
            names = self._names(folder)
            if names is None:
                continue
            if image_id is not None and folder not in self.by_id:
                self.by_id[folder] = names_2014(names)
            for candidate in image_names(name, image_id, self.by_id.get(folder, {})):
                if candidate in names:
                    if drop or candidate != name:
                        self.fallbacks.append((image, str(folder / candidate)))
                    return str(folder / candidate)
        return str(self.root.joinpath(*folders, name))


def load_records(
    paths: Sequence[str],
    image_root: str | None = None,
    max_samples: int | None = None,
    image_token: str = IMAGE_TOKEN,
) -> tuple[list[Record], list[Bad]]:
    """Read and structurally check LLaVA JSON files (a list of records each).

    A file that is not JSON or not a list, or an ``image`` outside the image root, stops the
    run (InputError); a record with a bad shape becomes a `Bad` with its reason, so that all
    of them are reported at once. Ids are made unique and images found (module docstring).
    """
    if not paths:
        raise ConfigError("--data: give at least one LLaVA JSON file")
    records: list[Record] = []
    bad: list[Bad] = []
    ids = _UniqueIds()
    finders: dict[Path, _ImageFinder] = {}
    for path in paths:
        try:
            rows = msgspec.json.decode(read_bytes(path))
        except msgspec.DecodeError as e:
            raise InputError(path, f"invalid JSON ({e})") from None
        if not isinstance(rows, list):
            raise InputError(path, "expected a JSON list of records (LLaVA format)")
        root = Path(image_root) if image_root else Path(path).resolve().parent
        finder = finders.setdefault(root, _ImageFinder(root))
        for index, row in enumerate(rows):
            given = str(row.get("id", f"#{index}")) if isinstance(row, dict) else f"#{index}"
            rid = ids.unique(given, path, index)
            record, reason = _parse_record(row, index, given, rid, path, finder, image_token)
            if reason is not None:
                bad.append(Bad(rid, path, reason, index))
            elif record is not None:
                records.append(record)
            if max_samples is not None and len(records) >= max_samples:
                break
        if max_samples is not None and len(records) >= max_samples:
            break
    ids.warn()
    for finder in finders.values():
        if finder.fallbacks:
            given, found = finder.fallbacks[0]
            log.info(
                "%d image(s) found under their other COCO name or folder (e.g. %s -> %s)",
                len(finder.fallbacks),
                given,
                found,
            )
    return records, bad


def _parse_record(
    row: Any,
    index: int,
    given: str,
    rid: str,
    path: str,
    finder: _ImageFinder,
    image_token: str,
) -> tuple[Record | None, str | None]:
    if not isinstance(row, dict):
        return None, "not a JSON object"
    image = row.get("image")
    if isinstance(image, str) and image:  # before anything else: a crafted file stops here
        inside(finder.root, image, source=path, field=f"[{index}].image (id {given!r})")
    conversations = row.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        return None, "no 'conversations' list"
    turns: list[tuple[str, str]] = []
    for k, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return None, f"turn {k}: expected {{'from', 'value'}} with a string value"
        speaker = turn.get("from")
        expected = HUMAN if k % 2 == 0 else GPT
        if speaker != expected:
            return (
                None,
                f"turn {k} is from {speaker!r}, expected {expected!r} (turns alternate, starting with human)",
            )
        if speaker == GPT and not turn["value"].strip():
            return None, f"turn {k}: empty answer"
        turns.append((speaker, turn["value"]))
    if turns[-1][0] != GPT:
        return None, "ends with a human turn (no answer to learn)"
    counts = [value.count(image_token) for _, value in turns]
    if image is not None:
        if not isinstance(image, str) or not image:
            return None, "'image' is not a path"
        if sum(counts) != 1 or counts[0] != 1:
            where = ", ".join(f"turn {k}" for k, c in enumerate(counts) if c)
            return None, (
                f"{sum(counts)} {image_token} tokens ({where or 'none'}): an image record needs exactly one, "
                "in the first human turn"
            )
        turns[0] = (HUMAN, move_image_token_first(turns[0][1], image_token))
        image = finder.find(image)
    elif sum(counts):
        return None, f"has {image_token} but no 'image' file"
    return Record(rid, path, image, tuple(turns), index), None


# -- images ------------------------------------------------------------------------------------


def _check_image(path: str) -> tuple[str | None, tuple[int, int] | None]:
    """(why the image cannot be used or None, its width and height), from its header."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        return f"image not found: {path}", None
    try:
        with Image.open(path) as im:
            size = im.size
    except (UnidentifiedImageError, OSError) as e:
        return f"image cannot be opened: {path} ({type(e).__name__})", None
    return None, size


# -- messages and tokens -----------------------------------------------------------------------


def record_messages(record: Record) -> list[dict[str, Any]]:
    """A record as chat-template messages (`chat_messages`)."""
    return chat_messages(record.turns, has_image=bool(record.image))


def chat_messages(turns: Iterable[tuple[str, str]], *, has_image: bool) -> list[dict[str, Any]]:
    """LLaVA turns (human/gpt, checked by `load_records`) as chat-template messages, as the
    model is asked at inference (`llava_pose.vlm.generate.messages`) and as TRL's exports hold
    them: content parts, an image placeholder first in the first user turn where the record
    has an image (its ``<image>`` taken out of the text, as LLaVA's preprocess_multimodal
    moves it to the front)."""
    out = []
    for k, (speaker, text) in enumerate(turns):
        parts: list[dict[str, Any]] = []
        if k == 0 and has_image:
            parts.append({"type": "image"})
            text = text.replace(IMAGE_TOKEN, "").strip()
        role = "user" if speaker == HUMAN else "assistant"
        out.append({"role": role, "content": [*parts, {"type": "text", "text": text}]})
    return out


def image_token_counter(processor: Any, pad_to_square: bool = False) -> Callable[[Any], int]:
    """size (width, height) or None -> how many tokens the processor turns one image's
    placeholder into (the placeholder's own token included). Asked of the processor itself on
    a blank image: once when every probe agrees (fixed-resolution families), else once per
    size (Qwen's dynamic resolution, Idefics3's and InternVL's tiles, OneVision's AnyRes). The
    probes span sizes and aspect ratios, since a tiler can give common shapes the same grid
    (InternVL gives 336x336, 640x480 and 480x640 alike four tiles and a thumbnail)."""
    from PIL import Image

    placeholder = processor.image_token
    cache: dict[tuple[int, int], int] = {}

    def count(size: Any) -> int:
        w, h = size or (336, 336)
        if pad_to_square:
            w = h = max(w, h)
        if (w, h) not in cache:
            ids = processor(
                text=placeholder, images=[Image.new("RGB", (w, h))], add_special_tokens=False
            )["input_ids"][0]
            cache[(w, h)] = len(ids)
        return cache[(w, h)]

    probes = ((336, 336), (640, 480), (480, 640), (640, 424), (1000, 200), (48, 48))
    shapes = {count(size) for size in probes}
    if len(shapes) == 1:
        fixed = shapes.pop()
        return lambda size: fixed
    return count


def count_image_tokens(processor: Any) -> tuple[int, int]:
    """(image placeholder token id, tokens one image becomes) of a fixed-resolution processor."""
    token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    return token_id, image_token_counter(processor)(None)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    full_length: int  # before truncation to max_length
    image_at: int = -1  # where the image tokens start, or -1


class Encoder:
    """Renders records with the chat template and tokenizes them, the one place besides TRL's
    collator where labels are made: the answers' tokens (what ``{% generation %}`` marks, found
    from the tokenizer's offsets of ONE tokenization of the whole text), everything else -100.

    The image placeholder becomes `num_image_tokens` copies of itself (an int, or a function of
    the image's size: `image_token_counter`). Where the processor repeats the placeholder
    token (LLaVA, Qwen) the ids are exactly the collator's; where it wraps it in other tokens
    (Idefics3, Gemma 3) the lengths and positions are, which is what validation needs."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        image_token_id: int,
        num_image_tokens: int | Callable[[Any], int],
        max_length: int,
        chat_template: str | None = None,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "training needs a fast (tokenizers-backed) tokenizer: it maps labels by character offsets"
            )
        if chat_template is None:
            from ..vlm.families import families

            chat_template = families()["llava"].prompt_template()
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length

    def image_tokens(self, size: Any = None) -> int:
        n = self.num_image_tokens
        return n if isinstance(n, int) else n(size)

    def render(self, record: Record) -> str:
        return self.tokenizer.apply_chat_template(
            record_messages(record), chat_template=self.chat_template, tokenize=False
        )

    def encode(self, record: Record, size: Any = None) -> Encoded:
        return self.encode_many([record], [size])[0]

    def encode_many(
        self, records: Sequence[Record], sizes: Sequence[Any] | None = None
    ) -> list[Encoded]:
        import numpy as np

        if not records:
            return []
        done = self.tokenizer.apply_chat_template(
            [record_messages(r) for r in records],
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        sizes = sizes or [None] * len(records)
        out = []
        for ids, mask, record, size in zip(
            done["input_ids"], done["assistant_masks"], records, sizes, strict=True
        ):
            ids_arr = np.asarray(ids, dtype=np.int64)
            labels = np.where(np.asarray(mask, dtype=bool), ids_arr, IGNORE_INDEX)
            where = np.flatnonzero(ids_arr == self.image_token_id) if record.image else []
            at = -1
            if len(where):  # one placeholder -> the model's N image tokens
                at = int(where[0])
                n = self.image_tokens(size)
                fill = np.full(n, self.image_token_id, dtype=np.int64)
                ids_arr = np.concatenate([ids_arr[:at], fill, ids_arr[at + 1 :]])
                labels = np.concatenate([labels[:at], np.full(n, IGNORE_INDEX), labels[at + 1 :]])
            full = len(ids_arr)
            out.append(
                Encoded(
                    ids_arr[: self.max_length].tolist(),
                    labels[: self.max_length].tolist(),
                    full,
                    at,
                )
            )
        return out

    def problem(self, record: Record, encoded: Encoded, size: Any = None) -> str | None:
        """Why this encoded record must not be trained on, or None."""
        ids, labels = encoded.input_ids, encoded.labels
        if record.image:
            expected = self.image_tokens(size)
            if encoded.image_at < 0:
                return "the chat template put no image placeholder where the image goes"
            if encoded.image_at + expected > self.max_length:
                return f"--max-length {self.max_length} cuts into the image tokens"
            if ids.count(self.image_token_id) != expected:
                return f"{ids.count(self.image_token_id)} image tokens after tokenization, expected {expected}"
        if all(label == IGNORE_INDEX for label in labels):
            return (
                f"answer truncated away: {encoded.full_length} tokens > --max-length {self.max_length}, "
                "no assistant token left to learn from"
            )
        return None


# -- validation --------------------------------------------------------------------------------


@dataclass
class DataReport:
    """What the validation pass found."""

    records: int = 0
    image_records: int = 0
    text_records: int = 0
    bad: list[Bad] = field(default_factory=list)
    truncated: int = 0  # kept, but cut to max_length
    lengths: list[int] = field(default_factory=list)  # tokens per kept record, after truncation

    def reasons(self) -> Counter[str]:
        return Counter(_reason_kind(b.reason) for b in self.bad)

    def summary(self) -> str:
        kept = len(self.lengths)
        text = f"{self.records} records: {kept} usable ({self.image_records} with an image, {self.text_records} text-only)"
        if self.bad:
            kinds = ", ".join(f"{n} {k}" for k, n in self.reasons().most_common())
            text += f"; {len(self.bad)} bad ({kinds})"
        if self.lengths:
            ordered = sorted(self.lengths)
            pct = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
            text += f"; tokens per sample: median {pct(0.5)}, p95 {pct(0.95)}, max {ordered[-1]}"
        if self.truncated:
            text += f"; {self.truncated} cut to --max-length"
        return text


def _reason_kind(reason: str) -> str:
    for key in (
        "image not found",
        "image cannot be opened",
        "truncated away",
        "cuts into the image",
        "<image>",
    ):
        if key in reason:
            return {"<image>": "wrong <image> count"}.get(key, key)
    return reason.split(":")[0][:50]


def validate(
    records: Sequence[Record],
    encoder: Encoder,
    *,
    structural: Iterable[Bad] = (),
    check_images: bool = True,
    workers: int = 16,
    batch: int = 512,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Record], DataReport]:
    """Check images, turns and lengths of every record; return the good ones and a report."""
    report = DataReport(bad=list(structural))
    report.records = len(records) + len(report.bad)
    reasons: dict[int, str] = {}
    checked: dict[str, tuple[str | None, tuple[int, int] | None]] = {}
    if check_images:
        paths = sorted({r.image for r in records if r.image})
        with ThreadPoolExecutor(max_workers=workers) as pool:
            checked = dict(zip(paths, pool.map(_check_image, paths), strict=True))
        for i, r in enumerate(records):
            if r.image and checked[r.image][0]:
                reasons[i] = checked[r.image][0]  # type: ignore[assignment]
    kept: list[Record] = []
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        sizes = [checked.get(r.image, (None, None))[1] if r.image else None for r in chunk]
        for offset, (record, encoded, size) in enumerate(
            zip(chunk, encoder.encode_many(chunk, sizes), sizes, strict=True)
        ):
            i = start + offset
            reason = reasons.get(i) or encoder.problem(record, encoded, size)
            if reason:
                report.bad.append(Bad(record.id, record.source, reason, record.index))
                continue
            kept.append(record)
            report.lengths.append(len(encoded.input_ids))
            report.truncated += encoded.full_length > encoder.max_length
            if record.image:
                report.image_records += 1
            else:
                report.text_records += 1
        if progress:
            progress(len(chunk))
    return kept, report


# -- the dataset TRL trains on -----------------------------------------------------------------


def sft_dataset(records: Sequence[Record], pad_colour: tuple[int, int, int] | None) -> Any:
    """The records as a `datasets.Dataset` in TRL's conversational vision form (``messages``
    with image placeholders, ``images``), the images opened (and padded to a square with
    `pad_colour` unless None) only when a batch is made, in the data-loader workers."""
    from datasets import Dataset

    kept = list(records)

    def rows(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        chosen = [kept[i] for i in batch["index"]]
        return {
            "messages": [record_messages(r) for r in chosen],
            "images": [[load_image(r.image, pad_colour)] if r.image else [] for r in chosen],
        }

    return Dataset.from_dict({"index": list(range(len(kept)))}).with_transform(rows)
