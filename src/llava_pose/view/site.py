"""`SiteData` -> a static site folder: the page's assets and the data shards it loads.

See the package docstring for the layout. Shards are scripts (``LPV.put(name, data);``) so one
loader works from a server and from ``file://``. Writing is plain file writes into a folder the
caller owns (a temp folder, or the export's temp sibling renamed into place when complete).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ConfigError, InputError, OutputError, environment_error
from ..paths import fold, path_problem
from ..records import KEYPOINT_NAMES
from ..skeleton import BOX_COLOUR, LIMBS, SIDE_COLOURS, limb_side, side
from .model import SiteData

log = logging.getLogger("llava_pose")

FORMAT = 1
PAGE_SIZE = 50  # rows on one page of the list
ROWS_PER_SHARD = 100  # a page of the unfiltered list is one file
TEXT_PER_SHARD = 1000  # ~1 MB of generated text per search shard
PAGES_PER_BUCKET = 16  # image pages per detail file, on average
MAX_FACET_VALUES = 30  # a facet's values are bits of a 32-bit mask in view.js
ASSETS = ("index.html", "view.js", "view.css")
DATA_DIR = "data"
THUMBS_DIR = "thumbs"
THUMB_SIDE = 640  # px, the longer side of an exported image
MARKER = ".llava-pose-view"  # in an export: says the folder is ours to replace
# Names of the images a page may show (what a browser draws); any other file a record names
# is neither served nor thumbnailed.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_encoder = msgspec.json.Encoder()


def bucket_of(key: str, buckets: int) -> int:
    """The detail shard of an image page: FNV-1a (32-bit) of the key's UTF-8 bytes, modulo
    `buckets`. ``view.js`` computes the same, so a link names its page by image path alone."""
    h = 0x811C9DC5
    for byte in key.encode("utf-8"):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % buckets


def image_file(root: Path, key: str) -> Path | None:
    """The file of image `key` under `root`, or None when there is none to show.

    The key must name an image (`IMAGE_SUFFIXES`: what a browser draws; a record naming any
    other file gets nothing served or thumbnailed) and stay inside the root lexically (`paths`: folded, so no ``..`` reaches the
    OS). Folders on the way may be links (``val2017`` on another disk is the user's choice, as
    `paths` allows), but the file itself must be a regular file or a link that resolves inside
    the real root or its own real folder: a file linked out of its folder is refused, so the
    server and the export never read what the data merely points at."""
    if not key.lower().endswith(IMAGE_SUFFIXES) or path_problem(key) is not None:
        return None
    path = root / fold(key)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return path
    if not stat.S_ISLNK(st.st_mode):
        return None
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    allowed = (_real(root), _real(path.parent))
    return path if real.is_file() and any(real.is_relative_to(a) for a in allowed) else None


@functools.lru_cache(maxsize=4096)
def _real(folder: Path) -> Path:
    return folder.resolve()


def _put(path: Path, name: str, obj: Any) -> None:
    data = b"LPV.put(" + _encoder.encode(name) + b"," + _encoder.encode(obj) + b");\n"
    path.write_bytes(data)


def _skeleton() -> dict[str, Any]:
    return {
        "limbs": [list(limb) for limb in LIMBS],
        "limbSides": [limb_side(limb) for limb in LIMBS],
        "pointSides": [side(k) for k in range(len(KEYPOINT_NAMES))],
        "names": list(KEYPOINT_NAMES),
        "colours": dict(SIDE_COLOURS),
        "box": BOX_COLOUR,
    }


def _codes(data: SiteData) -> tuple[list[list[int]], list[int], dict[str, list[int]]]:
    """Per row, the index of its combination of facet masks; the combinations; counts."""
    index = {f.name: {v: i for i, v in enumerate(f.values)} for f in data.facets}
    combos: dict[tuple[int, ...], int] = {}
    codes: list[int] = []
    counts = {f.name: [0] * len(f.values) for f in data.facets}
    for row in data.rows:
        masks = []
        for f in data.facets:
            mask = 0
            for v in row.facets.get(f.name, ()):
                i = index[f.name][v]
                mask |= 1 << i
                counts[f.name][i] += 1
            masks.append(mask)
        codes.append(combos.setdefault(tuple(masks), len(combos)))
    return [list(c) for c in combos], codes, counts


def _encode_codes(codes: list[int], combos: int) -> tuple[str, int]:
    width = max(1, math.ceil(math.log(max(combos, 2), 64)))
    chars = []
    for code in codes:
        digits = []
        for _ in range(width):
            digits.append(_ALPHABET[code % 64])
            code //= 64
        chars.append("".join(reversed(digits)))
    return "".join(chars), width


def _check_facets(data: SiteData) -> None:
    for f in data.facets:
        if len(f.values) > MAX_FACET_VALUES:
            raise ConfigError(
                f"facet {f.title!r} has {len(f.values)} values; the viewer filters at most "
                f"{MAX_FACET_VALUES} per facet"
            )


def write_site(data: SiteData, out: Path, image_src: Callable[[str], str | None]) -> None:
    """Write the site of `data` into `out` (created; files already there are overwritten).
    `image_src(key)` is each page's image URL relative to the site, or None (no image)."""
    _check_facets(data)
    folder = out / DATA_DIR
    for sub in ("rows", "pages", "text"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        text = resources.files("llava_pose").joinpath(f"data/view/{name}").read_bytes()
        (out / name).write_bytes(text)
    n = len(data.rows)
    for start in range(0, n, ROWS_PER_SHARD):
        rows = [
            {
                "id": r.id,
                "key": r.key,
                "item": r.item,
                "b": [list(b) for b in r.badges],
                "s": r.snippet,
            }
            for r in data.rows[start : start + ROWS_PER_SHARD]
        ]
        _put(
            folder / "rows" / f"{start // ROWS_PER_SHARD}.js",
            f"rows/{start // ROWS_PER_SHARD}",
            rows,
        )
    for start in range(0, n, TEXT_PER_SHARD):
        texts = [r.text.lower() for r in data.rows[start : start + TEXT_PER_SHARD]]
        k = start // TEXT_PER_SHARD
        _put(folder / "text" / f"{k}.js", f"text/{k}", texts)
    buckets = max(1, math.ceil(len(data.pages) / PAGES_PER_BUCKET))
    grouped: list[dict[str, Any]] = [{} for _ in range(buckets)]
    for key, p in data.pages.items():
        p["src"] = image_src(key)
        grouped[bucket_of(key, buckets)][key] = p
    for b, pages in enumerate(grouped):
        _put(folder / "pages" / f"{b}.js", f"pages/{b}", pages)
    combos, codes, counts = _codes(data)
    text, width = _encode_codes(codes, len(combos))
    columns = {
        "width": width,
        "codes": text,
        "combos": combos,
        "sort": {name: [r.sort.get(name) for r in data.rows] for name, _ in data.sorts},
    }
    _put(folder / "columns.js", "columns", columns)
    manifest = {
        "format": FORMAT,
        "kind": data.kind,
        "title": data.title,
        "noun": data.noun,
        "summary": [list(s) for s in data.summary],
        "notes": data.notes,
        "rows": n,
        "pages": len(data.pages),
        "pageSize": PAGE_SIZE,
        "rowsPerShard": ROWS_PER_SHARD,
        "textPerShard": TEXT_PER_SHARD,
        "buckets": buckets,
        "facets": [
            {
                "name": f.name,
                "title": f.title,
                "values": [
                    {"value": v, "count": counts[f.name][i]} for i, v in enumerate(f.values)
                ],
            }
            for f in data.facets
        ],
        "sorts": [{"name": name, "title": title} for name, title in data.sorts],
        "skeleton": _skeleton(),
    }
    _put(folder / "manifest.js", "manifest", manifest)


def served_src(root: Path | None) -> tuple[Callable[[str], str | None], set[str]]:
    """For the server: each image's URL (``img/<key>``), and the set of keys it may serve
    (filled as the pages are written)."""
    served: set[str] = set()

    def src(key: str) -> str | None:
        if root is None or image_file(root, key) is None:
            return None
        rel = fold(key)
        served.add(rel)
        return "img/" + urllib.parse.quote(rel)

    return src, served


def _thumb(job: tuple[str, str, int, int, int]) -> str | OSError | None:
    """Write one thumbnail (a worker): None when written; why the image was skipped (it
    cannot be read, or its header fails `overlay.size_problem` against the annotated size,
    so a crafted file is never decoded); or the OSError that kept the thumbnail from being
    written, which ends the export."""
    from PIL import Image

    from ..overlay import image_header

    source, target, side_px, width, height = job
    try:
        with image_header(source, (width, height) if width and height else None) as im:
            im.draft("RGB", (side_px, side_px))
            small: Image.Image = im.convert("RGB")
            small.thumbnail((side_px, side_px))
    except InputError as e:
        return str(e)
    except Exception as e:  # Pillow's decoders raise all kinds on a corrupt or crafted file
        return f"{source}: cannot read the image ({e})"
    tmp = target + ".tmp"
    try:
        small.save(tmp, "JPEG", quality=82, optimize=True)
        os.replace(tmp, target)
    except OSError as e:
        return e
    return None


def _link_or_copy(source: Path, target: Path) -> None:
    """Reuse a file of the previous export without touching it (it stays whole until the new
    export replaces it)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def make_thumbs(
    root: Path | None, out: Path, old: Path | None, sizes: dict[str, tuple[int, int]]
) -> tuple[dict[str, str], list[str]]:
    """For an export: the thumbnail URL (``thumbs/<key>``) of each image of `sizes` (key ->
    annotated width, height; 0 when unknown) that has one, and why each of the others that
    exist was skipped. Thumbnails are made with Pillow, in parallel; one of the previous
    export (`old`) newer than its image is reused. A bad image is skipped and counted, never
    the end of the export; a thumbnail that cannot be written raises its OSError."""
    urls: dict[str, str] = {}
    jobs: list[tuple[str, str, int, int, int]] = []
    pending: list[tuple[str, str]] = []
    for key, (width, height) in sizes.items():
        if root is None:
            continue
        path = image_file(root, key)
        if path is None:
            continue
        rel = fold(key)
        url = f"{THUMBS_DIR}/{urllib.parse.quote(rel)}"
        target = out / THUMBS_DIR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        previous = old / THUMBS_DIR / rel if old is not None else None
        if previous is not None and previous.is_file():
            with contextlib.suppress(OSError):
                if previous.stat().st_mtime >= path.stat().st_mtime:
                    _link_or_copy(previous, target)
                    urls[key] = url
                    continue
        jobs.append((str(path), str(target), THUMB_SIDE, width, height))
        pending.append((key, url))
    if not jobs:
        return urls, []
    log.info("making %d thumbnails", len(jobs))
    if len(jobs) < 64:
        results = [_thumb(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            results = list(pool.map(_thumb, jobs, chunksize=32))
    skipped: list[str] = []
    for (key, url), result in zip(pending, results, strict=True):
        if isinstance(result, OSError):
            raise result
        if result is None:
            urls[key] = url
        else:
            skipped.append(result)
    return urls, skipped


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError the machine causes while writing under `path` (a read-only mount, a full
    disk, no permission, a name too long) becomes an `OutputError` naming `path`, the folder
    the user named rather than a temp file inside it; any other stays a bug's traceback."""
    try:
        yield
    except OSError as e:
        if environment_error(e) is None:
            raise
        raise OutputError(path, e) from None


def check_export(out: Path) -> None:
    """`out` may be written: new, empty, or an earlier export (it holds `MARKER`), in a place
    that can hold a folder (checked before the data is read, as far as a look can tell)."""
    with writing(out):
        ours = (out / MARKER).is_file()
        if out.exists() and not ours and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(
                f"--export: {out} exists and is not a `llava-pose view` export: choose a new "
                "or empty folder"
            )
        above = next((p for p in out.absolute().parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(f"--export: cannot write {out}: {above} is a file, not a folder")


@contextlib.contextmanager
def export_folder(out: Path) -> Iterator[tuple[Path, Path | None]]:
    """A temp folder beside `out` to write the export into, and the previous export (to reuse
    thumbnails from); on success the new folder replaces `out`. A folder that is not an
    export of ours is never replaced."""
    check_export(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    old = out if (out / MARKER).is_file() else None
    try:
        yield tmp, old
        (tmp / MARKER).write_text("written by llava-pose view --export; safe to replace\n")
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
