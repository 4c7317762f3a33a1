"""Named quality filters."""

from __future__ import annotations

import pytest

from llava_pose.filters import check_text, context_numbers
from llava_pose.records import ImageContext, Obj, Person


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Based on the keypoints, he is crouching.", "mentions_source"),
        ("The key points show a raised arm.", "mentions_source"),
        ("The bounding box of the dog is small.", "mentions_source"),
        ("As the caption says, a man skis.", "mentions_source"),
        ("Judging from the coordinates, she stands left.", "mentions_source"),
        ("His wrist is at 0.45 of the height.", "quotes_numbers"),
        ("The box [0.1, 0.2, 0.3, 0.4] holds a dog.", "quotes_numbers"),
        ("Her nose is at (512, 330).", "quotes_numbers"),
        ("The man raises his right arm above his head.", None),
        ("Two people stand near 3 bikes.", None),
    ],
)
def test_check_text(text: str, reason: str | None) -> None:
    assert check_text(text) == reason


def test_compact_values_from_the_context_count_as_quoted() -> None:
    ctx = ImageContext(
        image_id=1,
        image="x.jpg",
        width=10,
        height=10,
        captions=("c",),
        objects=(Obj("dog", (0.512, 0.33, 0.6, 0.7)),),
        persons=(Person((0.1, 0.2, 0.3, 0.4), ((0.25, 0.75, 2),) + ((0.0, 0.0, 0),) * 16),),
    )
    numbers = context_numbers(ctx)
    assert {"512", "330", "600", "700", "250", "750"} <= numbers
    assert check_text("The dog sits at 512 across.", numbers) == "quotes_numbers"
    assert check_text("The year was 1999.", numbers) is None
    assert check_text("About 150 people watch.", numbers) is None  # not a context value
