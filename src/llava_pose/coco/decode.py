"""The COCO files as decoded: the typed shapes msgspec reads (anything not named is skipped
unmaterialised), and decoding with errors that name the file, the field and the value."""

from __future__ import annotations

import logging
import mmap
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ..errors import InputError

log = logging.getLogger("llava_pose.coco")

# -- what is decoded from the files (anything not named here is skipped unmaterialised) ----
_Positive = Annotated[int, msgspec.Meta(gt=0)]
_XYWH = tuple[float, float, float, float]


class _Image(msgspec.Struct, gc=False):
    id: int
    width: _Positive
    height: _Positive
    file_name: str | None = None


class _Category(msgspec.Struct, gc=False):
    id: int
    name: str


class _Instance(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: _XYWH
    id: int = 0
    iscrowd: int = 0


class _PersonAnnotation(msgspec.Struct, gc=False):
    image_id: int
    bbox: _XYWH
    keypoints: msgspec.Raw  # decoded per person: 51 floats as Python objects are costly
    id: int = 0
    iscrowd: int = 0


class _Caption(msgspec.Struct, gc=False):
    image_id: int
    caption: str
    id: int = 0


class _InstancesFile(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Instance]
    categories: list[_Category]


class _KeypointsFile(msgspec.Struct):
    annotations: list[_PersonAnnotation]


class _SizedImage(msgspec.Struct, gc=False):
    id: int
    width: int
    height: int


class _KeypointsFileWithImages(msgspec.Struct):
    """The keypoints file and its own copy of the split's images (the official files carry
    one): their sizes let persons be read while another process reads the instances file."""

    annotations: list[_PersonAnnotation]
    images: list[_SizedImage] = []


class _CaptionsFile(msgspec.Struct):
    annotations: list[_Caption]


class _TypedPersonAnnotation(msgspec.Struct, gc=False):
    image_id: int
    bbox: _XYWH
    keypoints: list[float]
    id: int = 0
    iscrowd: int = 0


class _TypedKeypointsFile(msgspec.Struct):
    """The keypoints file with every number typed: only to say where a bad one is."""

    annotations: list[_TypedPersonAnnotation]


_DECODERS = {
    "instances": msgspec.json.Decoder(_InstancesFile),
    "person_keypoints": msgspec.json.Decoder(_KeypointsFile),
    "captions": msgspec.json.Decoder(_CaptionsFile),
}
_KEYPOINTS_WITH_IMAGES = msgspec.json.Decoder(_KeypointsFileWithImages)
_TYPED_DECODERS = {**_DECODERS, "person_keypoints": msgspec.json.Decoder(_TypedKeypointsFile)}
_FLOATS = msgspec.json.Decoder(list[float])
# ints stay ints (half the time of floats), and a bool is refused: Python's True == 1
_NUMBERS = msgspec.json.Decoder(list[int | float])
_PLAIN_NAME = re.compile(r"[^/\\\0:]+")  # a bare file name: nothing `paths` has to look at
_VISIBILITY = {1: 1, 2: 2}


class _Bad(Exception):
    """A problem in one value; the caller adds the file and the field prefix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _decode(path: Path, kind: str) -> Any:
    """Decode one annotation file from a read-only memory map.

    A map skips copying hundreds of MB into a bytes object; the pages are the OS file cache.
    The map closes when nothing refers to it any more (`msgspec.Raw` values do).
    """
    data = _map(path)
    log.debug("reading %s (%.1f MB)", path, len(data) / 1e6)
    start = time.perf_counter()
    try:
        result = _DECODERS[kind].decode(data)
    except msgspec.ValidationError as e:
        field, problem = _split_validation(e)
        raise InputError(path, problem, field.lstrip(".") or None) from None
    except msgspec.DecodeError as e:
        raise _decode_error(path, kind, data, str(e)) from None
    log.debug("decoded %s in %.2f s", path.name, time.perf_counter() - start)
    return result


_NON_FINITE = re.compile(rb"-?Infinity|NaN")
_NOT_A_NUMBER = "not a finite number (NaN or Infinity, which JSON does not have)"


def _decode_error(path: Path, kind: str, data: mmap.mmap | bytes, message: str) -> InputError:
    """Invalid JSON, with its line and column. NaN and Infinity (Python's ``json.dump`` writes
    them) also get the field that holds one, e.g. ``annotations[12].bbox[2]``: the file is
    decoded again, typed, with each such token written as a number out of range, which the
    decoder refuses at its path. Only on this error path; a NaN in a field that is never read
    (``segmentation``) keeps the line and column."""
    at = _BYTE.search(message)
    offset = int(at.group(1)) if at else -1
    if offset >= 0 and (
        data[offset : offset + 3] == b"NaN" or data[offset : offset + 8] == b"Infinity"
    ):
        try:
            _TYPED_DECODERS[kind].decode(_NON_FINITE.sub(b"1e999", data))
        except msgspec.ValidationError as e:
            field, problem = _split_validation(e)
            if problem == "number out of range":
                problem = _NOT_A_NUMBER
            return InputError(path, problem, field.lstrip(".") or None)
        except msgspec.DecodeError:
            pass  # another syntax error further on: the first one is the one to fix
        return InputError(path, f"{_json_problem(message, data)}: {_NOT_A_NUMBER}")
    return InputError(path, _json_problem(message, data))


def _map(path: Path) -> mmap.mmap | bytes:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a file") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None


_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(.*)`$")


def _split_validation(e: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.images[3].width`" -> (".images[3].width",
    "expected int, got str"); a missing field moves into the path."""
    text = str(e)
    m = _AT.match(text)
    message, field = (m.group(1), m.group(2)) if m else (text, "")
    missing = _MISSING.match(message)
    if missing:
        return f"{field}.{missing.group(1)}", "missing"
    message = message.replace("`", "")
    return field, message[:1].lower() + message[1:]


_BYTE = re.compile(r"\(byte (\d+)\)")


def _json_problem(message: str, data: mmap.mmap | bytes) -> str:
    m = _BYTE.search(message)
    if m:
        offset = int(m.group(1))
        head = bytes(data[:offset])
        line = head.count(b"\n") + 1
        column = offset - (head.rfind(b"\n") + 1) + 1
        message = _BYTE.sub(f"(line {line}, column {column})", message)
    if "truncated" in message:
        message = "the file ends early (empty or cut off)"
    return f"invalid JSON: {message.removeprefix('JSON is malformed: ')}"
