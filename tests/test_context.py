"""Rendering contexts for the teacher, and parsing them back to the same numbers."""

from __future__ import annotations

import pytest

from llava_pose.coco import load_split
from llava_pose.context import parse_compact, parse_paper, render_compact, render_paper
from llava_pose.records import ImageContext, Obj, Person

HIDDEN = (0.0, 0.0, 0)


def make_ctx() -> ImageContext:
    kps = [(0.5, 0.2, 2), (0.51, 0.19, 1)] + [HIDDEN] * 15
    return ImageContext(
        image_id=7,
        image="val2017/000000000007.jpg",
        width=640,
        height=480,
        captions=("A man throws a frisbee.", "Someone in a park."),
        objects=(Obj("frisbee", (0.1, 0.2, 0.15, 0.25)), Obj("cell phone", (0.0, 0.999, 1.0, 1.0))),
        persons=(
            Person((0.3, 0.1, 0.6, 0.9), tuple(kps)),
            Person((0.7, 0.5, 0.8, 0.95), (HIDDEN,) * 17),
        ),
    )


def test_paper_format_is_llava_style_with_normalized_numbers() -> None:
    messages = render_paper(make_ctx())
    assert messages[:2] == ["caption: A man throws a frisbee.", "caption: Someone in a park."]
    assert messages[2] == "frisbee: [0.1, 0.2, 0.15, 0.25]"
    assert messages[3] == "cell phone: [0.0, 0.999, 1.0, 1.0]"
    person = messages[4].split("\n")
    assert person[0] == "person: [0.3, 0.1, 0.6, 0.9]"
    assert person[1].startswith("keypoints: [[0.5, 0.2, 2], [0.51, 0.19, 1], [0.0, 0.0, 0]")
    assert person[1].count("[") == 17 + 1  # 17 triples inside one list
    # a person without any labelled keypoint is sent as a box only
    assert messages[5] == "person: [0.7, 0.5, 0.8, 0.95]"


def test_compact_format_uses_thousandths_and_marks_hidden_points() -> None:
    text = render_compact(make_ctx())
    lines = text.split("\n")
    assert lines[0] == "Captions:"
    assert "frisbee 100 200 150 250" in lines
    assert "cell phone 0 999 1000 1000" in lines
    person = next(line for line in lines if line.startswith("person 300"))
    points = person.split(": ")[1].split(" ")
    assert points[:3] == ["500,200", "510,190?", "-"] and len(points) == 17
    assert "person 700 500 800 950" in lines


@pytest.mark.parametrize("fmt", ["paper", "compact"])
def test_round_trip_on_every_coco_mini_image(coco_mini, fmt) -> None:
    """The compact context loses nothing: parsing it back gives the same numbers (and the
    paper format too), on every image of the real COCO-MINI, people or not."""
    contexts = load_split(coco_mini, "val2017", human_only=False) + load_split(
        coco_mini, "train2017", human_only=False
    )
    assert len(contexts) >= 30  # all 34 images of tests/data/coco-mini
    for ctx in contexts:
        if fmt == "paper":
            captions, objects, persons = parse_paper(render_paper(ctx))
        else:
            captions, objects, persons = parse_compact(render_compact(ctx))
        assert tuple(captions) == ctx.captions
        assert tuple(objects) == ctx.objects
        for got, want in zip(persons, ctx.persons, strict=True):
            assert got.box == want.box
            if want.num_labelled:
                assert got.keypoints == want.keypoints
            else:  # sent as a box only: nothing labelled to lose
                assert got.num_labelled == 0
