"""The overlay figure: drawing primitives and panel layout as plain data, then real COCO-MINI
photos rendered and checked pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageColor

from llava_pose.coco import load_split
from llava_pose.errors import ConfigError, InputError
from llava_pose.overlay import (
    BOX_COLOUR,
    ELLIPSIS,
    LEGEND,
    LEGEND_BACKGROUND,
    OUTLINE,
    PANEL_MIN_HEIGHT,
    TAG_TEXT,
    Circle,
    PanelLine,
    Rect,
    Segment,
    Shape,
    Text,
    clean_turn,
    figure_shapes,
    fitting_prefix,
    layout_panel,
    legend_shapes,
    panel_width,
    parse_image,
    pick_record,
    place_tag,
    render,
    size_problem,
    sizes,
    wrap,
)
from llava_pose.records import ImageContext, Keypoint, Person
from llava_pose.skeleton import SIDE_COLOURS


def chars(text: str, size: int) -> float:
    """A stand-in font: every character half the font size wide."""
    return len(text) * size * 0.5


def points(**named: Keypoint) -> tuple[Keypoint, ...]:
    from llava_pose.records import KEYPOINT_NAMES

    kps: list[Keypoint] = [(0.0, 0.0, 0)] * 17
    for name, kp in named.items():
        kps[KEYPOINT_NAMES.index(name.replace("_", " "))] = kp
    return tuple(kps)


def context(*persons: Person) -> ImageContext:
    return ImageContext(1, "val2017/000000000001.jpg", 640, 480, ("a caption",), persons=persons)


# -- primitives --------------------------------------------------------------------------------


def test_one_person_draws_labelled_points_limbs_between_them_a_box_and_a_tag() -> None:
    person = Person(
        box=(0.25, 0.5, 0.5, 1.0),
        keypoints=points(
            left_shoulder=(0.3, 0.6, 2),  # visible: filled
            right_shoulder=(0.45, 0.6, 2),
            left_elbow=(0.3, 0.8, 1),  # labelled, hidden: a ring
            left_wrist=(0.0, 0.0, 0),  # not labelled: nothing, and no limb to it
        ),
    )
    s = sizes(640, 480)
    shapes = figure_shapes(context(person), 640, 480, chars)
    person_part = shapes[: -len(legend_shapes(640, 480, chars))]
    pad = s.font * 0.25
    tag_w, tag_h = chars("P1", s.font) + 2 * pad, s.font + 2 * pad
    assert person_part == [
        Rect(160.0, 240.0, 320.0, 480.0, outline=BOX_COLOUR, width=s.box),
        Segment(192.0, 288.0, 288.0, 288.0, SIDE_COLOURS["centre"], s.limb),  # shoulders
        Segment(192.0, 288.0, 192.0, 384.0, SIDE_COLOURS["left"], s.limb),  # upper arm
        Circle(192.0, 288.0, s.radius, SIDE_COLOURS["left"], OUTLINE, s.outline),
        Circle(288.0, 288.0, s.radius, SIDE_COLOURS["right"], OUTLINE, s.outline),
        Circle(192.0, 384.0, s.radius, None, SIDE_COLOURS["left"], s.ring),
        Rect(160.0, 240.0 - tag_h, 160.0 + tag_w, 240.0, outline=None, width=0, fill=BOX_COLOUR),
        Text(160.0 + pad, 240.0 - tag_h + pad, "P1", TAG_TEXT, s.font),
    ]


def test_tags_count_people_from_the_left_and_stay_inside_the_picture() -> None:
    right = Person(box=(0.7, 0.0, 0.99, 0.9), keypoints=points())
    left = Person(box=(0.1, 0.2, 0.3, 0.9), keypoints=points())
    shapes = figure_shapes(context(right, left), 640, 480, chars)
    tags = [s for s in shapes if isinstance(s, Text) and s.colour == TAG_TEXT]
    assert [t.text for t in tags] == ["P2", "P1"]  # in person order, labelled from the left
    fills = [s for s in shapes if isinstance(s, Rect) and s.fill == BOX_COLOUR]
    # The right person's box touches the top: its tag goes inside the box, not above it.
    assert fills[0].y1 == 0.0 and fills[1].y2 == pytest.approx(0.2 * 480)
    assert all(r.x1 >= 0 and r.x2 <= 640 and r.y1 >= 0 for r in fills)


def test_tags_of_small_boxes_side_by_side_never_cover_each_other() -> None:
    """P1 and P2 were printed over each other on small neighbouring boxes."""
    people = [
        Person(box=(0.10 + 0.012 * k, 0.40, 0.13 + 0.012 * k, 0.50), keypoints=points())
        for k in range(6)
    ]
    shapes = figure_shapes(context(*people), 640, 480, chars)
    tags = [s for s in shapes if isinstance(s, Rect) and s.fill == BOX_COLOUR]
    assert len(tags) == 6
    for i, a in enumerate(tags):
        assert a.x1 >= 0 and a.x2 <= 640 and a.y1 >= 0 and a.y2 <= 480
        for b in tags[i + 1 :]:
            apart = a.x2 <= b.x1 or b.x2 <= a.x1 or a.y2 <= b.y1 or b.y2 <= a.y1
            assert apart, (a, b)


def test_place_tag_takes_the_first_free_corner() -> None:
    box = (100.0, 100.0, 200.0, 200.0)
    assert place_tag(box, 30, 10, 640, 480, []) == (100.0, 90.0)  # above the top-left
    taken = [(100.0, 90.0, 130.0, 100.0)]
    assert place_tag(box, 30, 10, 640, 480, taken) == (100.0, 100.0)  # inside it


def test_a_person_without_keypoints_still_gets_box_and_tag_but_no_point() -> None:
    shapes = figure_shapes(context(Person((0.1, 0.1, 0.2, 0.2), points())), 640, 480, chars)
    n_legend = len(legend_shapes(640, 480, chars))
    kinds = [type(s).__name__ for s in shapes[:-n_legend]]
    assert kinds == ["Rect", "Rect", "Text"]


def test_legend_explains_left_right_centre_hidden() -> None:
    legend = legend_shapes(640, 480, chars)
    assert isinstance(legend[0], Rect) and legend[0].fill == LEGEND_BACKGROUND
    words = [s.text for s in legend if isinstance(s, Text)]
    assert words == [label for label, _ in LEGEND] == ["left", "right", "centre", "hidden"]
    markers = [s for s in legend if isinstance(s, Circle)]
    assert [m.fill for m in markers[:3]] == [SIDE_COLOURS[k] for k in ("left", "right", "centre")]
    assert markers[3].fill is None  # hidden: a ring, as in the picture
    box = legend[0]
    assert all(box.x1 <= m.x - m.r and m.y + m.r <= box.y2 for m in markers)
    assert box.y2 <= 480


def test_sizes_scale_with_the_image() -> None:
    small, big = sizes(640, 480), sizes(2560, 1920)
    assert big.limb == 4 * small.limb and big.radius == 4 * small.radius
    assert big.font > small.font and big.panel_font > small.panel_font
    tiny = sizes(40, 30)
    assert tiny.limb >= 1 and tiny.radius >= 2 and tiny.font >= 11


# -- the text panel ----------------------------------------------------------------------------


def test_wrap_fills_lines_greedily_and_breaks_words_wider_than_a_line() -> None:
    # 10 px per character at size 20: 100 px hold 10 characters.
    assert wrap("aa bb cc dd ee", 50, 20, chars) == ["aa bb", "cc dd", "ee"]
    assert wrap("abcdefghijklmnop x", 100, 20, chars) == ["abcdefghij", "klmnop x"]
    assert wrap("", 100, 20, chars) == []


def test_a_long_word_is_broken_where_a_letter_by_letter_search_would_break_it() -> None:
    """Letters of unequal widths (i narrow, m wide): each line is the longest prefix that fits,
    as measuring one letter more at a time finds it, with the measures of a few prefixes per
    line instead of one per letter of the whole word."""
    widths = {"i": 3.0, "m": 11.0, "o": 7.0}
    calls = 0

    def measure(text: str, size: int) -> float:
        nonlocal calls
        calls += 1
        return sum(widths[c] for c in text)

    word = "".join("imomoomiiimmo"[(k * 7) % 13] for k in range(20_000))
    lines = wrap(word, 100.0, 20, measure)
    assert "".join(lines) == word
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        assert measure(line, 20) <= 100.0
        if following:
            assert measure(line + following[0], 20) > 100.0
    assert calls <= 12 * len(lines)
    assert fitting_prefix("mmm", 5.0, 20, measure) == 1  # not even one letter: one anyway


def test_size_problem_refuses_what_is_not_the_annotated_image() -> None:
    assert size_problem((640, 427), (640, 427)) is None
    assert size_problem((320, 213), (640, 427)) is None  # a copy at half size
    assert "larger" in (size_problem((1280, 854), (640, 427)) or "")
    assert "larger" in (size_problem((427, 640), (640, 427)) or "")  # turned
    assert "shape" in (size_problem((640, 300), (640, 427)) or "")  # cropped
    assert size_problem((640, 480), None) is None and size_problem((640, 480), (0, 0)) is None


def test_clean_turn_drops_the_image_token_and_keeps_paragraphs() -> None:
    assert clean_turn("<image>\nWhat is   he doing?") == ["What is he doing?"]
    assert clean_turn("First.\n\nSecond <image>") == ["First.", "Second"]


def test_panel_has_title_prefixes_and_hanging_indent() -> None:
    turns = [("human", "<image>\nWhat is the man doing?"), ("gpt", "He is skiing.")]
    lines = layout_panel("42-conv", turns, 400, 300, 10, chars)
    assert [(line.text, line.kind) for line in lines] == [
        ("42-conv", "title"),
        ("Q:", "human-label"),
        ("What is the man doing?", "human"),
        ("A:", "gpt-label"),
        ("He is skiing.", "gpt"),
    ]
    assert lines[0] == PanelLine(10.0, 10.0, "42-conv", "title")
    assert lines[1].x == lines[3].x == 10.0
    assert lines[2].x == lines[4].x > lines[1].x  # text aligned past the widest prefix
    assert lines[1].y == lines[2].y < lines[3].y == lines[4].y


def test_long_text_is_cut_with_an_ellipsis_inside_the_panel() -> None:
    long = " ".join(f"word{i}" for i in range(400))
    width, height, size = 300, 200, 10
    lines = layout_panel(
        "7-detail", [("human", "Describe."), ("gpt", long)], width, height, 10, chars
    )
    line_h = size * 1.35
    assert all(line.y + line_h <= height - size for line in lines)
    assert all(line.x + chars(line.text, size) <= width - size for line in lines)
    assert lines[-1].text.endswith(ELLIPSIS) and lines[-1].kind == "gpt"
    assert sum(ELLIPSIS in line.text for line in lines) == 1
    shown = " ".join(line.text for line in lines if line.kind == "gpt").removesuffix(ELLIPSIS)
    assert long.startswith(shown.strip())  # a prefix of the text, whole words


def test_a_turn_that_no_longer_fits_marks_the_last_shown_line() -> None:
    turns = [("human", "One?"), ("gpt", "Yes.")] * 20
    lines = layout_panel("1-conv", turns, 300, 120, 10, chars)
    assert lines[-1].text.endswith(ELLIPSIS)
    assert len(lines) < 2 * len(turns)


def test_paragraphs_of_a_turn_are_set_apart_under_one_prefix() -> None:
    lines = layout_panel("1-detail", [("gpt", "One.\nTwo.")], 400, 300, 10, chars)
    assert [(line.text, line.kind) for line in lines[1:]] == [
        ("A:", "gpt-label"),
        ("One.", "gpt"),
        ("Two.", "gpt"),
    ]
    assert lines[3].y - lines[2].y == pytest.approx(10 * 1.35 * 1.25)


def test_text_is_set_in_dejavu_sans_which_has_accents_and_dashes() -> None:
    from llava_pose.overlay import font

    assert font(14).getname() == ("DejaVu Sans", "Book")
    assert font(14, bold=True).getname() == ("DejaVu Sans", "Bold")


def test_panel_width_grows_with_the_image_but_stays_readable() -> None:
    assert panel_width(640, 480) == round(640 * 0.85)
    assert panel_width(1280, 960) > panel_width(640, 480)
    assert panel_width(100, 80) >= 28 * sizes(100, 80).panel_font


# -- picking the image and the record ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "000000391895",
        "391895",
        "000000391895.jpg",
        "val2017/000000391895.jpg",
        "COCO_val2014_000000391895.jpg",
    ],
)
def test_image_is_a_stem_an_id_or_a_file_name(text: str) -> None:
    assert parse_image(text) == 391895


def test_an_image_that_names_no_coco_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"--image: .*'holiday\.png'"):
        parse_image("holiday.png")


RECORDS = [
    {"id": "5-conv", "image": "val2017/000000000005.jpg", "conversations": []},
    {"id": "7-conv-1", "image": "val2017/000000000007.jpg", "conversations": []},
    {"id": "7-conv-0", "image": "val2017/000000000007.jpg", "conversations": []},
    {"id": "7-detail", "image": "val2017/000000000007.jpg", "conversations": []},
    {"id": 99, "image": "val2017/000000000099.jpg", "conversations": []},
]


def test_record_by_id_or_by_the_images_task() -> None:
    def pick(**kw: object) -> object:
        return pick_record(RECORDS, "d.json", **kw)["id"]  # type: ignore[arg-type]

    assert pick(record="7-detail", image_id=None, task=None) == "7-detail"
    assert pick(record="99", image_id=99, task=None) == 99  # numeric ids match their text
    assert pick(record=None, image_id=5, task=None) == "5-conv"  # default: conversation
    assert pick(record=None, image_id=7, task="detail") == "7-detail"
    assert pick(record=None, image_id=7, task="conversation") == "7-conv-0"  # split: first part


def test_record_errors_name_the_file_and_field() -> None:
    with pytest.raises(InputError, match=r"^d\.json: id: no record with id 'nope'"):
        pick_record(RECORDS, "d.json", record="nope", image_id=None, task=None)
    with pytest.raises(InputError, match=r"^d\.json: id: no reasoning record of image 7"):
        pick_record(RECORDS, "d.json", record=None, image_id=7, task="reasoning")
    with pytest.raises(ConfigError, match=r"--record: 7-detail is about image 7.*not --image 5"):
        pick_record(RECORDS, "d.json", record="7-detail", image_id=5, task=None)


# -- real photos -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def val(coco_mini: Path) -> dict[int, ImageContext]:
    return {
        c.image_id: c
        for c in load_split(coco_mini, "val2017", human_only=False, check_images=False)
    }


def rgb(colour: str) -> tuple[int, int, int]:
    r, g, b = ImageColor.getrgb(colour)[:3]
    return (r, g, b)


def isolated(shapes: list[Shape], c: Circle) -> bool:
    """No other marker, tag or legend near `c` (what is drawn later could cover it)."""
    reach = 2 * c.r + 4
    for s in shapes:
        if s is c:
            continue
        if isinstance(s, Circle):
            x1, y1, x2, y2 = s.x - s.r, s.y - s.r, s.x + s.r, s.y + s.r
        elif isinstance(s, Rect) and s.fill is not None:
            x1, y1, x2, y2 = s.x1, s.y1, s.x2, s.y2
        else:
            continue
        if x1 - reach < c.x < x2 + reach and y1 - reach < c.y < y2 + reach:
            return False
    return True


def photo_of(coco_mini: Path, ctx: ImageContext) -> Image.Image:
    with Image.open(coco_mini / ctx.image) as im:
        return im.convert("RGB")


@pytest.mark.parametrize("image_id", [109313, 536038, 217285])
def test_keypoints_have_their_sides_colour_in_the_picture(
    coco_mini: Path, val: dict[int, ImageContext], image_id: int
) -> None:
    from llava_pose.overlay import measure_text

    ctx = val[image_id]
    photo = photo_of(coco_mini, ctx)
    out = render(photo, ctx)
    assert out.size == photo.size and out.mode == "RGB"
    shapes = figure_shapes(ctx, *photo.size, measure_text)
    legend = len(legend_shapes(*photo.size, measure_text))
    markers = [s for s in shapes[:-legend] if isinstance(s, Circle)]
    filled = [c for c in markers if c.fill is not None and isolated(shapes, c)]
    rings = [c for c in markers if c.fill is None and isolated(shapes, c)]
    assert filled, "no isolated visible keypoint to check"
    for c in filled:  # the centre of a visible point is its side's colour, exactly
        assert out.getpixel((int(c.x), int(c.y))) == rgb(c.fill or ""), c
    for c in rings:  # a hidden point's ring, on the right edge, is its side's colour
        assert out.getpixel((int(c.x + c.r - c.width / 2), int(c.y))) == rgb(c.outline), c
    if image_id == 536038:
        assert rings, "536038 has hidden keypoints: expected a ring to check"


def test_untouched_photo_pixels_stay_exact_and_boxes_are_drawn(
    coco_mini: Path, val: dict[int, ImageContext]
) -> None:
    ctx = val[109313]  # one man, box well inside the picture
    photo = photo_of(coco_mini, ctx)
    out = render(photo, ctx)
    w, h = photo.size
    x1, y1, x2, y2 = (round(v * s) for v, s in zip(ctx.persons[0].box, (w, h, w, h), strict=True))
    # Far from the person and above the legend: the photo as it was.
    corner = (w - 3, 3) if x2 < w - 20 else (3, 3)
    assert out.getpixel(corner) == photo.getpixel(corner)
    # The box's left edge, half-way down, is the box colour.
    assert out.getpixel((x1 + 1, (y1 + y2) // 2)) == rgb(BOX_COLOUR)
    # The drawing changed a fair share of pixels, not the whole picture.
    diff = ImageChops.difference(out, photo).convert("L").point(lambda v: 255 if v else 0)
    changed = diff.histogram()[255]
    assert 0.005 * w * h < changed < 0.5 * w * h


def test_the_panel_widens_the_picture_and_holds_text(
    coco_mini: Path, val: dict[int, ImageContext]
) -> None:
    ctx = val[229358]
    photo = photo_of(coco_mini, ctx)
    w, h = photo.size
    turns = [("human", "<image>\nHow many people are there?"), ("gpt", "Two. " * 500)]
    out = render(photo, ctx, ("229358-conv", turns))
    assert out.size == (w + panel_width(w, h), max(h, PANEL_MIN_HEIGHT))
    assert out.crop((0, 0, w, h)).tobytes() == render(photo, ctx).tobytes()
    panel = out.crop((w, 0, out.width, out.height))
    inked = sum(panel.convert("L").histogram()[:255])
    assert inked > 0.02 * panel.width * panel.height  # text was drawn ...
    bottom_rows = panel.crop((0, panel.height - 8, panel.width, panel.height))
    assert bottom_rows.getextrema() == ((255, 255),) * 3  # ... and stops above the bottom


def test_rendering_is_deterministic(coco_mini: Path, val: dict[int, ImageContext]) -> None:
    ctx = val[311002]
    photo = photo_of(coco_mini, ctx)
    a = render(photo, ctx, ("311002-conv", [("human", "Who?"), ("gpt", "Five people.")]))
    b = render(photo, ctx, ("311002-conv", [("human", "Who?"), ("gpt", "Five people.")]))
    assert a.tobytes() == b.tobytes()
