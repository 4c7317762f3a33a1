"""A folder of images -> image contexts, through a pose model (`llava_pose.estimators`).

Which images: every ``.jpg``, ``.jpeg``, ``.png`` and ``.webp`` under the folder (nested
folders too, links followed once, names starting with a dot skipped), or the files a list
names (one path a line, relative to the list's folder; ``#`` starts a comment), sorted by
path. A context's ``image`` is that relative path and its ``image_id`` a 48-bit hash of it
(`image_id`): stable across machines, shards and reruns, exact in JSON and JavaScript.

How: images are decoded in batches (the next batch is read while the model works on this
one), each through `images.open_header` first, so a crafted header cannot make us decode more
than `images.MAX_PIXELS`. An image that is missing, not an image, truncated or too large is
skipped with its reason and counted; it never stops the run.

Resuming (`Journal`): ``prepare`` appends each finished batch, skips included, to
``OUT.partial.jsonl`` and syncs it to disk. A run killed at any point (``kill -9``
included) and started again reads it, cuts a line the kill left half-written, and estimates only
the images it does not hold; the output is then written from it in path order, atomically,
and the journal removed, so the result equals an uninterrupted run's. A journal made with other
settings (backend, models, thresholds, shard) is refused rather than mixed.

Sharding (`pick_shard`): ``--shard K/N`` takes the K-th of N contiguous, equal slices of the
sorted list. N machines need no coordination, and their outputs concatenated in K order are the
single-machine output, byte for byte.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from .errors import ConfigError, InputError, OutputError
from .images import decode, open_header
from .paths import path_problem
from .progress import progress_bar
from .records import ImageContext

log = logging.getLogger("llava_pose")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
JOURNAL_SUFFIX = ".partial.jsonl"


@dataclass(frozen=True)
class Listing:
    """The images of a folder or a list file, as paths relative to `root`, sorted."""

    root: Path
    images: list[str]
    source: Path


def list_images(source: str | Path) -> Listing:
    """The images `source` names: a folder (walked) or a list file (read)."""
    path = Path(source)
    if path.is_dir():
        return Listing(path, _walk(path), path)
    if path.is_file():
        return Listing(path.parent, _read_list(path), path)
    raise InputError(path, "not found (--images takes a folder of images or a list file)")


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree: walked once
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((rel / name).as_posix())
    return sorted(found)


def _read_list(path: Path) -> list[str]:
    out: list[str] = []
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            path, "not a text file (--images takes a folder or a list of image paths)"
        ) from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        problem = path_problem(line)
        if problem is not None:
            raise InputError(
                path, f"{problem}; paths are relative to the list's folder", f"line {n}"
            )
        out.append(PurePosixPath(line.replace("\\", "/")).as_posix())
    repeated = [p for p, n in collections.Counter(out).items() if n > 1]
    if repeated:  # one pass: a 100k-frame list must not take minutes to refuse
        raise InputError(path, f"{min(repeated)} is listed more than once")
    return sorted(out)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` -> (K, N), 1 <= K <= N."""
    if text is None:
        return None
    k, _, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        raise ConfigError(
            f"--shard: expected K/N with 1 <= K <= N (e.g. 1/4 ... 4/4), got {text!r}"
        )
    return shard


def pick_shard(images: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """The K-th of N contiguous slices of `images`, sizes differing by at most one. Pure."""
    if shard is None:
        return list(images)
    k, n = shard
    return list(images[len(images) * (k - 1) // n : len(images) * k // n])


def image_id(rel: str) -> int:
    """A stable id for an image path: the first 6 bytes of its blake2b, under 2**48."""
    return int.from_bytes(hashlib.blake2b(rel.encode("utf-8"), digest_size=6).digest(), "big")


# -- captions ---------------------------------------------------------------------------------


class _CaptionLine(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    caption: str | None = None
    captions: list[str] = []


def read_captions(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Captions per image path from a JSONL file of ``{"image": PATH, "caption": TEXT}`` or
    ``{"image": PATH, "captions": [TEXT, ...]}`` lines (an image may have several lines);
    whitespace collapsed as COCO's are."""
    from .coco import read_jsonl_numbered

    out: dict[str, list[str]] = {}
    for n, line in read_jsonl_numbered(path, _CaptionLine):
        texts = ([line.caption] if line.caption is not None else []) + line.captions
        if not texts:
            raise InputError(path, "give caption or captions", f"line {n}")
        image = PurePosixPath(line.image.replace("\\", "/")).as_posix()
        for text in texts:
            text = " ".join(text.split())
            if text:
                out.setdefault(image, []).append(text)
    return {k: tuple(v) for k, v in out.items()}


def with_captions(
    contexts: Sequence[ImageContext], captions: dict[str, tuple[str, ...]]
) -> list[ImageContext]:
    """Each context with its captions (none where the file has none). Pure."""
    return [msgspec.structs.replace(c, captions=captions.get(c.image, ())) for c in contexts]


# -- estimating -------------------------------------------------------------------------------


class Outcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """One image done: its context (captions not yet added), or why it was skipped."""

    image: str
    context: ImageContext | None = None
    skipped: str | None = None


def read_pixels(root: Path, rel: str) -> Any:
    """The RGB pixels of one image, checked by `images.open_header` before decoding."""
    import numpy as np

    path = root / rel
    with open_header(path, path) as im:
        decode(im, path)
        return np.asarray(im.convert("RGB"))


def _load(root: Path, rels: Sequence[str]) -> list[tuple[str, Any]]:
    """(path, pixels) per image, or (path, InputError) when it cannot be read."""
    out: list[tuple[str, Any]] = []
    for rel in rels:
        try:
            out.append((rel, read_pixels(root, rel)))
        except InputError as e:
            out.append((rel, e))
        except OSError as e:  # unreadable file (permissions, I/O error)
            out.append((rel, InputError(root / rel, f"cannot read ({e.strerror or e})")))
    return out


def estimate(
    root: Path,
    rels: Sequence[str],
    estimator: Any,
    batch_size: int,
) -> Iterator[list[Outcome]]:
    """The outcomes of `rels`, one list per batch, in order. Each batch is read from disk in a
    worker thread while the model works on the one before."""
    from .estimators import to_object, to_person

    batches = [list(rels[i : i + batch_size]) for i in range(0, len(rels), batch_size)]
    bar = progress_bar(len(rels), "estimating keypoints", unit="img")
    started = time.monotonic()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="read") as pool:
        ahead = pool.submit(_load, root, batches[0]) if batches else None
        for k in range(len(batches)):
            assert ahead is not None
            loaded = ahead.result()
            if k + 1 < len(batches):
                ahead = pool.submit(_load, root, batches[k + 1])
            good = [(rel, px) for rel, px in loaded if not isinstance(px, InputError)]
            found = estimator.estimate([px for _, px in good]) if good else []
            by_rel = {rel: (px, f) for (rel, px), f in zip(good, found, strict=True)}
            outcomes = []
            for rel, px in loaded:
                if isinstance(px, InputError):
                    outcomes.append(Outcome(rel, skipped=px.problem))
                    continue
                pixels, det = by_rel[rel]
                h, w = int(pixels.shape[0]), int(pixels.shape[1])
                ctx = ImageContext(
                    image_id=image_id(rel),
                    image=rel,
                    width=w,
                    height=h,
                    captions=(),
                    objects=tuple(to_object(o, w, h) for o in det.objects),
                    persons=tuple(to_person(p, w, h, estimator) for p in det.persons),
                )
                outcomes.append(Outcome(rel, context=ctx))
            done += len(outcomes)
            if bar is not None:
                bar.update(len(outcomes))
                rate = done / max(time.monotonic() - started, 1e-9)
                bar.set_postfix_str(f"{rate:.1f} img/s")
            yield outcomes
    if bar is not None:
        bar.close()


# -- the journal that makes prepare resumable ----------------------------------------------------


class Journal:
    """``OUT.partial.jsonl``: a header line of settings, then one `Outcome` per finished image,
    appended a batch at a time and synced to disk."""

    def __init__(self, out: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(f"{out}{JOURNAL_SUFFIX}")
        self.settings = settings
        self._decoder = msgspec.json.Decoder(Outcome)

    def open(self) -> dict[str, Outcome]:
        """What an earlier run finished (empty for a fresh journal, which is created)."""
        if not self.path.exists():
            self._write(msgspec.json.encode({"settings": self.settings}) + b"\n", "wb")
            return {}
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a kill can leave a line half-written
        lines = complete.splitlines()
        try:
            header = msgspec.json.decode(lines[0]) if lines else None
        except msgspec.DecodeError:
            header = None
        if len(lines) <= 1 and (
            not isinstance(header, dict) or header.get("settings") != self.settings
        ):
            self._write(msgspec.json.encode({"settings": self.settings}) + b"\n", "wb")
            return {}  # nothing was finished (a model that failed to load): nothing to keep
        if not isinstance(header, dict) or header.get("settings") != self.settings:
            theirs = header.get("settings") if isinstance(header, dict) else None
            raise InputError(
                self.path,
                f"an unfinished run with other settings ({_difference(theirs, self.settings)}): "
                "rerun with those to finish it, or delete this file to start over",
            )
        done: dict[str, Outcome] = {}
        for n, line in enumerate(lines[1:], 2):
            try:
                outcome = self._decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise InputError(
                    self.path, f"unreadable ({e}): delete it to start over", f"line {n}"
                ) from None
            done[outcome.image] = outcome
        if len(complete) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        return done

    def append(self, outcomes: Sequence[Outcome]) -> None:
        self._write(b"".join(msgspec.json.encode(o) + b"\n" for o in outcomes), "ab")

    def _write(self, data: bytes, mode: str) -> None:
        try:
            with open(self.path, mode) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise OutputError(self.path, e) from None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _difference(theirs: Any, ours: dict[str, Any]) -> str:
    if not isinstance(theirs, dict):
        return "no settings line"
    keys = [k for k in ours if theirs.get(k) != ours[k]]
    return "; ".join(f"{k} {theirs.get(k)!r} there, {ours[k]!r} now" for k in keys) or "unknown"


@dataclass
class Tally:
    """What a run did, for its summary line."""

    estimated: int = 0
    earlier: int = 0
    skipped: dict[str, int] | None = None
    persons: int = 0

    def count(self, outcomes: Sequence[Outcome], earlier: bool = False) -> None:
        for o in outcomes:
            if earlier:
                self.earlier += 1
            else:
                self.estimated += 1
            if o.skipped is not None:
                self.skipped = self.skipped or {}
                reason = o.skipped.split(" (")[0]
                self.skipped[reason] = self.skipped.get(reason, 0) + 1
            elif o.context is not None:
                self.persons += len(o.context.persons)

    def line(self) -> str:
        skipped = sum((self.skipped or {}).values())
        why = "; ".join(f"{n} {r}" for r, n in sorted((self.skipped or {}).items()))
        return (
            f"estimated {self.estimated} images"
            + (f" ({self.earlier} more were done by an earlier run)" if self.earlier else "")
            + f", {self.persons} persons found; {skipped} images skipped"
            + (f" ({why})" if why else "")
        )


def run(
    listing: Listing,
    rels: Sequence[str],
    estimator_factory: Callable[[], Any],
    batch_size: int,
    journal: Journal | None = None,
) -> tuple[list[Outcome], Tally]:
    """Every image of `rels` estimated (or skipped), in the order of `rels`; with a
    `journal`, what it holds is reused and what is new is appended as it finishes. The
    estimator is built only when there is something left to estimate."""
    done = journal.open() if journal is not None else {}
    tally = Tally()
    tally.count([done[r] for r in rels if r in done], earlier=True)
    todo = [r for r in rels if r not in done]
    if todo:
        estimator = estimator_factory()
        for outcomes in estimate(listing.root, todo, estimator, batch_size):
            if journal is not None:
                journal.append(outcomes)
            done.update((o.image, o) for o in outcomes)
            tally.count(outcomes)
    return [done[r] for r in rels], tally
