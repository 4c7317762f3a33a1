"""A Figure-1 style picture of one image: its people's skeletons over the photo and, beside it,
one generated sample's text (the paper's Figure 1 shows the context and the replies next to
the image; people judge generated data by looking at it).

Everything that decides what is drawn is a pure function returning plain data, so tests check
it by equality: `figure_shapes` (circles, segments, rectangles and texts in output pixels, for
a context and an image size) and `layout_panel` (the text panel's lines and their places).
`render` only paints them with Pillow: shapes at twice the size, then box-filtered down, which
antialiases edges while a marker's inside keeps its exact colour and untouched photo pixels
stay as they were. Text is DejaVu Sans from matplotlib's copy, so the output is the same on
every machine with the same package versions.

What the skeleton parts are (limbs, sides, colours, labels) is `llava_pose.skeleton`, shared
with the `view` browser; the person's own left and right, not the viewer's.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .coco import image_id_of
from .errors import ConfigError, InputError
from .images import decode, open_header
from .records import ImageContext
from .skeleton import BOX_COLOUR, LIMBS, SIDE_COLOURS, limb_side, person_labels, side
from .tasks import request_id, task_type

if TYPE_CHECKING:
    from PIL import Image

# -- style: every colour, word and proportion of the picture ----------------------------------

OUTLINE = "#FFFFFF"  # ring around a visible keypoint, so it reads on any photo
TAG_TEXT = "#000000"  # person label text on its BOX_COLOUR tag
LEGEND_BACKGROUND = "#000000B0"
LEGEND_TEXT = "#FFFFFF"
LEGEND_HIDDEN = "#FFFFFF"  # the legend's hidden-point ring (in the picture: the side's colour)
# (label, side or "hidden"): what the legend explains, in its order.
LEGEND: tuple[tuple[str, str], ...] = (
    ("left", "left"),
    ("right", "right"),
    ("centre", "centre"),
    ("hidden", "hidden"),
)
PANEL_BACKGROUND = "#FFFFFF"
PANEL_COLOURS: dict[str, str] = {
    "title": "#111111",
    "human-label": "#0072B2",
    "human": "#1B3A57",
    "gpt-label": "#D55E00",
    "gpt": "#222222",
    "other-label": "#555555",
    "other": "#222222",
}
SPEAKERS: dict[str, str] = {"human": "Q:", "gpt": "A:"}  # turn prefixes, as in LLaVA's figures
ELLIPSIS = "…"  # marks text cut at the panel's bottom
IMAGE_TOKEN = "<image>"
SUPERSAMPLE = 2  # shapes are drawn this many times larger, then box-filtered down
PANEL_SHARE = 0.85  # panel width as a share of the image width ...
PANEL_MIN_CHARS = 28  # ... but at least this many font sizes wide
PANEL_MIN_HEIGHT = 360  # px: a short image still gets a readable panel
LINE_SPACING = 1.35  # line height / font size
TURN_GAP = 0.4  # extra space after a turn, in lines
PARAGRAPH_GAP = 0.25  # ... and between the paragraphs of one turn
FONT_FILES = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}

Kind = Literal["title", "human", "gpt", "other", "human-label", "gpt-label", "other-label"]
Measure = Callable[[str, int], float]  # (text, font size) -> width in px


# -- drawing primitives (output pixels) --------------------------------------------------------


@dataclass(frozen=True)
class Circle:
    """A keypoint: filled (visible, v=2) or a ring (labelled but hidden, v=1)."""

    x: float
    y: float
    r: float
    fill: str | None
    outline: str
    width: int


@dataclass(frozen=True)
class Segment:
    """A limb between two labelled keypoints."""

    x1: float
    y1: float
    x2: float
    y2: float
    colour: str
    width: int


@dataclass(frozen=True)
class Rect:
    """A person's box, a label's tag or the legend's background."""

    x1: float
    y1: float
    x2: float
    y2: float
    outline: str | None
    width: int
    fill: str | None = None


@dataclass(frozen=True)
class Text:
    """Text whose top-left corner is at (x, y)."""

    x: float
    y: float
    text: str
    colour: str
    size: int


Shape = Circle | Segment | Rect | Text


@dataclass(frozen=True)
class Sizes:
    """Line widths, radii and font sizes for one image size: they scale with the image, so a
    4000 px photo gets markers as visible as a 640 px one."""

    limb: int
    radius: float
    ring: int
    outline: int
    box: int
    font: int
    panel_font: int


def sizes(width: int, height: int) -> Sizes:
    """Sizes for an image of `width` x `height` px (COCO's usual 640 px side is the unit)."""
    u = max(width, height) / 640
    return Sizes(
        limb=max(1, round(3 * u)),
        radius=max(2.0, round(4.5 * u, 1)),
        ring=max(1, round(2 * u)),
        outline=max(1, round(1 * u)),
        box=max(1, round(2 * u)),
        font=max(11, round(13 * u)),
        panel_font=max(13, round(14 * u)),
    )


def _px(v: float, size: int) -> float:
    return round(v * size, 2)


def figure_shapes(ctx: ImageContext, width: int, height: int, measure: Measure) -> list[Shape]:
    """Everything drawn over a `width` x `height` photo of `ctx`, in painting order: boxes,
    limbs, keypoints, person tags, legend. Pure: `measure` gives a text's width in px.

    A limb joins two labelled (v>0) points; a visible point (v=2) is a filled dot with a white
    rim, a hidden one (v=1) a ring in its side's colour; unlabelled ones (v=0) are not drawn.
    """
    s = sizes(width, height)
    boxes: list[Shape] = []
    limbs: list[Shape] = []
    points: list[Shape] = []
    tags: list[Shape] = []
    labels = person_labels(ctx)
    pad = max(1.0, s.font * 0.25)
    placed: list[tuple[float, float, float, float]] = []
    for i, person in enumerate(ctx.persons):
        x1, y1, x2, y2 = person.box
        box = (_px(x1, width), _px(y1, height), _px(x2, width), _px(y2, height))
        boxes.append(Rect(*box, outline=BOX_COLOUR, width=s.box))
        kps = person.keypoints
        for a, b in LIMBS:
            if kps[a][2] > 0 and kps[b][2] > 0:
                limbs.append(
                    Segment(
                        _px(kps[a][0], width),
                        _px(kps[a][1], height),
                        _px(kps[b][0], width),
                        _px(kps[b][1], height),
                        SIDE_COLOURS[limb_side((a, b))],
                        s.limb,
                    )
                )
        for k, (x, y, v) in enumerate(kps):
            if v == 0:
                continue
            colour = SIDE_COLOURS[side(k)]
            cx, cy = _px(x, width), _px(y, height)
            if v == 2:
                points.append(Circle(cx, cy, s.radius, colour, OUTLINE, s.outline))
            else:
                points.append(Circle(cx, cy, s.radius, None, colour, s.ring))
        tw, th = measure(labels[i], s.font) + 2 * pad, s.font + 2 * pad
        tx, ty = place_tag(box, tw, th, width, height, placed)
        placed.append((tx, ty, tx + tw, ty + th))
        tags.append(Rect(tx, ty, tx + tw, ty + th, outline=None, width=0, fill=BOX_COLOUR))
        tags.append(Text(tx + pad, ty + pad, labels[i], TAG_TEXT, s.font))
    return boxes + limbs + points + tags + legend_shapes(width, height, measure)


def place_tag(
    box: tuple[float, float, float, float],
    tw: float,
    th: float,
    width: int,
    height: int,
    placed: Sequence[tuple[float, float, float, float]],
) -> tuple[float, float]:
    """Where a `tw` x `th` person tag goes: on a corner of its box (above its top-left when
    there is room, first), where it covers no tag placed before and stays in the picture;
    else the first of those spots, moved down past the tags it would cover. Small boxes side
    by side no longer get their P1 and P2 printed over each other. Pure."""
    x1, y1, x2, y2 = box

    def fit(x: float, y: float) -> tuple[float, float]:
        return min(max(0.0, x), max(0.0, width - tw)), min(max(0.0, y), max(0.0, height - th))

    def free(x: float, y: float) -> bool:
        return all(x + tw <= a or b <= x or y + th <= c or d <= y for a, c, b, d in placed)

    spots = [
        (x1, y1 - th if y1 - th >= 0 else y1),  # top-left, above the box when there is room
        (x1, y1),  # top-left, inside
        (x2 - tw, y1 - th if y1 - th >= 0 else y1),  # top-right
        (x1, y2),  # below the box
        (x2 - tw, y2 - th),  # bottom-right, inside
    ]
    for x, y in (fit(*spot) for spot in spots):
        if free(x, y):
            return x, y
    x, y = fit(*spots[0])
    for _ in range(len(placed) + 1):  # below each tag in the way, in turn
        blocking = [
            t for t in placed if not (x + tw <= t[0] or t[2] <= x or y + th <= t[1] or t[3] <= y)
        ]
        if not blocking:
            break
        y = min(max(t[3] for t in blocking), max(0.0, height - th))
    return x, y


def legend_shapes(width: int, height: int, measure: Measure) -> list[Shape]:
    """The legend in the photo's bottom-left corner: a marker and a word per `LEGEND` entry."""
    s = sizes(width, height)
    pad = s.font * 0.5
    step = s.font * 1.3
    marker = 2 * s.radius + pad * 0.5
    text_w = max(measure(label, s.font) for label, _ in LEGEND)
    w = pad * 2 + marker + text_w
    h = pad * 2 + step * len(LEGEND) - (step - s.font)
    x0, y0 = pad, height - pad - h
    shapes: list[Shape] = [
        Rect(x0, y0, x0 + w, y0 + h, outline=None, width=0, fill=LEGEND_BACKGROUND)
    ]
    for n, (label, kind) in enumerate(LEGEND):
        top = y0 + pad + n * step
        cx, cy = x0 + pad + s.radius, top + s.font / 2
        if kind == "hidden":
            shapes.append(Circle(cx, cy, s.radius, None, LEGEND_HIDDEN, s.ring))
        else:
            shapes.append(Circle(cx, cy, s.radius, SIDE_COLOURS[kind], OUTLINE, s.outline))  # type: ignore[index]
        shapes.append(Text(x0 + pad + marker, top, label, LEGEND_TEXT, s.font))
    return shapes


# -- the text panel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelLine:
    """One line of the panel, its top-left corner in panel pixels and what it is."""

    x: float
    y: float
    text: str
    kind: Kind


def panel_width(width: int, height: int) -> int:
    """The text panel's width beside a `width` x `height` photo."""
    return max(round(width * PANEL_SHARE), PANEL_MIN_CHARS * sizes(width, height).panel_font)


def clean_turn(text: str) -> list[str]:
    """A turn's paragraphs: LLaVA's ``<image>`` token removed, whitespace collapsed."""
    text = text.replace(IMAGE_TOKEN, "")
    paragraphs = (" ".join(p.split()) for p in text.split("\n"))
    return [p for p in paragraphs if p]


def fitting_prefix(word: str, width: float, size: int, measure: Measure) -> int:
    """How many leading letters of `word` fit in `width` px (at least 1): the prefix width
    doubles until it no longer fits, then a binary search, so a line costs the measures of
    O(log n) prefixes no longer than twice the line, whatever the word's length."""
    if len(word) <= 1 or measure(word[:2], size) > width:
        return 1
    fits, k = 2, 4
    while k < len(word) and measure(word[:k], size) <= width:
        fits, k = k, 2 * k
    if k >= len(word):
        if measure(word, size) <= width:
            return len(word)
        k = len(word)
    too_wide = k  # word[:too_wide] is wider than the line; word[:fits] is not
    while too_wide - fits > 1:
        mid = (fits + too_wide) // 2
        if measure(word[:mid], size) <= width:
            fits = mid
        else:
            too_wide = mid
    return fits


def wrap(text: str, width: float, size: int, measure: Measure) -> list[str]:
    """Greedy word wrap to `width` px; a word wider than a line is broken between letters
    (`fitting_prefix`: a few measures per line, never one per letter of the whole word, which
    took minutes for a 3,000-letter word)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if measure(candidate, size) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while len(word) > 1:
            k = fitting_prefix(word, width, size, measure)
            if k == len(word):
                break
            lines.append(word[:k])
            word = word[k:]
        line = word
    if line:
        lines.append(line)
    return lines


def _with_ellipsis(text: str, width: float, size: int, measure: Measure) -> str:
    """`text` shortened word by word until it and the ellipsis fit in `width`."""
    words = text.split()
    while words and measure(" ".join(words) + " " + ELLIPSIS, size) > width:
        words.pop()
    return (" ".join(words) + " " + ELLIPSIS) if words else ELLIPSIS


def layout_panel(
    title: str,
    turns: Sequence[tuple[str, str]],
    width: int,
    height: int,
    size: int,
    measure: Measure,
) -> list[PanelLine]:
    """Lines of a `width` x `height` panel: the title, then each (speaker, text) turn with its
    prefix and a hanging indent. Text that does not fit ends in `ELLIPSIS` on the last line
    that fits, never past the bottom. Pure: `measure` gives a text's width in px."""
    pad = float(size)
    line_h = round(size * LINE_SPACING, 2)
    bottom = height - pad
    indent = max(measure(p, size) for p in SPEAKERS.values()) + size * 0.5
    body_w = width - 2 * pad - indent
    out = [PanelLine(pad, pad, title, "title")]
    y = pad + line_h * 1.5
    for speaker, value in turns:
        kind: Kind = speaker if speaker in SPEAKERS else "other"  # type: ignore[assignment]
        prefix = SPEAKERS.get(speaker, f"{speaker}:")
        for n, paragraph in enumerate(clean_turn(value)):
            if n:
                y += line_h * PARAGRAPH_GAP
            for k, line in enumerate(wrap(paragraph, body_w, size, measure)):
                if y + line_h > bottom:
                    return _cut(out, width - pad, size, measure)
                if n == k == 0:
                    out.append(PanelLine(pad, y, prefix, f"{kind}-label"))  # type: ignore[arg-type]
                out.append(PanelLine(pad + indent, y, line, kind))
                y += line_h
        y += line_h * TURN_GAP
    return out


def _cut(lines: list[PanelLine], right: float, size: int, measure: Measure) -> list[PanelLine]:
    """Mark the last body line as cut (the title alone gets the marker on its own line)."""
    last = lines[-1]
    if last.kind == "title":
        return [*lines, PanelLine(last.x, last.y + size * LINE_SPACING * 1.5, ELLIPSIS, "other")]
    text = _with_ellipsis(last.text, right - last.x, size, measure)
    return [*lines[:-1], PanelLine(last.x, last.y, text, last.kind)]


# -- picking the image and the record ---------------------------------------------------------


def parse_image(text: str) -> int:
    """The COCO image id in ``--image``: a file stem (000000391895), the id (391895) or a file
    name, 2017 or 2014 style, with or without folders."""
    name = PurePosixPath(text.strip().replace("\\", "/")).name
    if name.isdigit():
        return int(name)
    found = image_id_of(name)
    if found is None:
        raise ConfigError(
            f"--image: expected a COCO file stem, id or file name (000000391895, 391895, "
            f"000000391895.jpg), got {text!r}"
        )
    return found


def record_image_id(record: dict[str, Any]) -> int | None:
    """The COCO image id in a record's ``image`` path, as `verify` matches records."""
    image = record.get("image")
    return image_id_of(PurePosixPath(image).name) if isinstance(image, str) else None


def pick_record(
    records: Sequence[dict[str, Any]],
    path: str,
    *,
    record: str | None,
    image_id: int | None,
    task: str | None,
) -> dict[str, Any]:
    """The record to show: the one called `record`, else the image's record of `task`
    (``{image_id}-{short}``, or its first split-conversation part ``...-{k}``).

    Errors name the data file and the field."""
    if record is not None:
        for row in records:
            if str(row.get("id")) == record:
                found = record_image_id(row)
                if image_id is not None and found is not None and found != image_id:
                    raise ConfigError(
                        f"--record: {record} is about image {found} ({row.get('image')}), "
                        f"not --image {image_id}"
                    )
                return row
        raise InputError(path, f"no record with id {record!r} (--record)", "id")
    if image_id is None:
        raise ConfigError("--image: required (a file stem, id or file name)")
    name = task or "conversation"
    wanted = request_id(image_id, task_type(name).name)
    parts = re.compile(re.escape(wanted) + r"-(\d+)")
    first_part: tuple[int, dict[str, Any]] | None = None
    for row in records:
        rid = str(row.get("id"))
        if record_image_id(row) not in (image_id, None):
            continue
        if rid == wanted:
            return row
        m = parts.fullmatch(rid)
        if m and (first_part is None or int(m.group(1)) < first_part[0]):
            first_part = (int(m.group(1)), row)
    if first_part is not None:
        return first_part[1]
    raise InputError(
        path, f"no {name} record of image {image_id} (looked for id {wanted!r}; --task)", "id"
    )


def record_turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(speaker, text) of a record's turns."""
    return [(str(t["from"]), str(t["value"])) for t in row["conversations"]]


# -- painting ---------------------------------------------------------------------------------


@functools.cache
def _font_dir() -> Path | None:
    """matplotlib's bundled fonts (a core dependency), found without importing matplotlib."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    for base in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(base) / "mpl-data" / "fonts" / "ttf"
        if all((folder / name).is_file() for name in FONT_FILES.values()):
            return folder
    return None


@functools.cache
def font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans at `size` px, from matplotlib's copy: the same file wherever the package is
    installed, covering accents and typographic dashes (Pillow's built-in font has neither,
    and is the fallback). Basic layout: no dependence on the system's text shaping library."""
    from PIL import ImageFont

    folder = _font_dir()
    if folder is None:
        return ImageFont.load_default(size)
    name = FONT_FILES["bold" if bold else "regular"]
    return ImageFont.truetype(str(folder / name), size, layout_engine=ImageFont.Layout.BASIC)


def measure_text(text: str, size: int) -> float:
    """The width of `text` in px in `font(size)`."""
    return float(font(size).getlength(text))


def _paint(draw: Any, shape: Shape, k: int) -> None:
    """One non-text shape at `k` times its size."""
    if isinstance(shape, Circle):
        r = shape.r * k
        xy = (shape.x * k - r, shape.y * k - r, shape.x * k + r, shape.y * k + r)
        draw.ellipse(xy, fill=shape.fill, outline=shape.outline, width=shape.width * k)
    elif isinstance(shape, Segment):
        xy = (shape.x1 * k, shape.y1 * k, shape.x2 * k, shape.y2 * k)
        draw.line(xy, fill=shape.colour, width=shape.width * k)
    elif isinstance(shape, Rect):
        xy = (shape.x1 * k, shape.y1 * k, shape.x2 * k, shape.y2 * k)
        draw.rectangle(xy, fill=shape.fill, outline=shape.outline, width=shape.width * k)


def resize_to_width(photo: Image.Image, width: int) -> Image.Image:
    """`photo` scaled down to `width` px wide, aspect kept (coordinates are normalized, so the
    skeletons follow): smaller files for docs and slides. Never enlarged: a 640 px photo
    blown up to 1,200 px only blurs (the caller says so)."""
    from PIL import Image

    if photo.width <= width:
        return photo
    height = max(1, round(photo.height * width / photo.width))
    return photo.resize((width, height), Image.Resampling.LANCZOS)


def draw_skeletons(photo: Image.Image, ctx: ImageContext) -> Image.Image:
    """`photo` (RGB) with `figure_shapes` painted over it, as a new RGB image."""
    from PIL import Image, ImageDraw

    width, height = photo.size
    shapes = figure_shapes(ctx, width, height, measure_text)
    k = SUPERSAMPLE
    layer = Image.new("RGBA", (width * k, height * k), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for shape in shapes:
        if not isinstance(shape, Text):
            _paint(draw, shape, k)
    layer = layer.resize((width, height), Image.Resampling.BOX)
    out = Image.alpha_composite(photo.convert("RGBA"), layer)
    draw = ImageDraw.Draw(out)
    for shape in shapes:
        if isinstance(shape, Text):
            draw.text((shape.x, shape.y), shape.text, fill=shape.colour, font=font(shape.size))
    return out.convert("RGB")


def render(
    photo: Image.Image, ctx: ImageContext, panel: tuple[str, list[tuple[str, str]]] | None = None
) -> Image.Image:
    """The figure: the photo with its skeletons and, given (title, turns), the text panel to
    its right (`panel_width` wide, at least `PANEL_MIN_HEIGHT` tall)."""
    from PIL import Image, ImageDraw

    drawn = draw_skeletons(photo.convert("RGB"), ctx)
    if panel is None:
        return drawn
    width, height = drawn.size
    pw, ph = panel_width(width, height), max(height, PANEL_MIN_HEIGHT)
    size = sizes(width, height).panel_font
    out = Image.new("RGB", (width + pw, ph), PANEL_BACKGROUND)
    out.paste(drawn, (0, 0))
    draw = ImageDraw.Draw(out)
    title, turns = panel
    regular, bold = font(size), font(size, bold=True)
    for line in layout_panel(title, turns, pw, ph, size, measure_text):
        face = bold if line.kind == "title" or line.kind.endswith("-label") else regular
        draw.text((width + line.x, line.y), line.text, fill=PANEL_COLOURS[line.kind], font=face)
    return out


# -- files ------------------------------------------------------------------------------------


class _Turn(msgspec.Struct):
    from_: str = msgspec.field(name="from")
    value: str


class _Record(msgspec.Struct):
    """The part of a LLaVA record the panel shows; other fields are ignored, a record without
    an image (text-only, in LLaVA's mixes) is allowed."""

    id: str | int
    conversations: list[_Turn]
    image: str | None = None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a LLaVA JSON file; a malformed one is an error naming the file and field."""
    from .io import read_json

    rows: list[_Record] = read_json(path, list[_Record])
    out: list[dict[str, Any]] = msgspec.to_builtins(rows)
    return out


def size_problem(found: tuple[int, int], annotated: tuple[int, int] | None) -> str | None:
    """Why an image file whose header says `found` (width, height) px must not be decoded as
    the image annotated `annotated` px, or None. Pure.

    Wider or taller than the annotation, or of another shape (the keypoints would land
    elsewhere), is refused; a smaller copy of the same shape (a resized dataset) is not, since
    keypoints are normalized. (What no image may declare, whatever its annotation, is
    `images.size_problem`'s.)"""
    w, h = found
    if not annotated or min(annotated) <= 0:
        return None
    aw, ah = annotated
    if w > aw or h > ah:
        return f"is {w}x{h} px, larger than the {aw}x{ah} px the annotations say: not decoded"
    if abs(w * ah - h * aw) > max(aw, ah):  # more than rounding a scaled copy's sides
        return f"is {w}x{h} px, not the shape of the {aw}x{ah} px the annotations say"
    return None


@contextlib.contextmanager
def image_header(path: str | Path, annotated: tuple[int, int] | None = None) -> Iterator[Any]:
    """The opened, not yet decoded, image at `path` (`images.open_header`: any format Pillow
    reads, bounded in pixels), once its size also fits its annotation (`size_problem`)."""
    path = Path(path)
    with open_header(path, path, any_format=True) as im:
        problem = size_problem(im.size, annotated)
        if problem is not None:
            raise InputError(path, problem)
        yield im


def open_photo(path: str | Path, annotated: tuple[int, int] | None = None) -> Image.Image:
    """The image at `path`, decoded, as RGB; a missing or unreadable file, or one whose
    header fails `size_problem` against its `annotated` (width, height), is an InputError."""
    with image_header(path, annotated) as im:
        decode(im, Path(path))
        return im.convert("RGB")


def write_png(image: Image.Image, path: str | Path) -> None:
    """Save `image` as PNG atomically: a temp file beside `path`, then renamed over it."""
    from .io import atomic_open

    with atomic_open(path, "wb") as f:
        image.save(f, format="PNG", optimize=True)
