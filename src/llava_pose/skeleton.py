"""What a drawn skeleton is made of, shared by the `overlay` PNG and the `view` browser: limbs,
the side each keypoint and limb belongs to, its colour, and one label per person.

Pure data and functions of an `ImageContext`; drawing lives with each renderer.
"""

from __future__ import annotations

from typing import Literal

from .records import KEYPOINT_NAMES, ImageContext, Person

Side = Literal["left", "right", "centre"]

# COCO's person skeleton (the `skeleton` of the person category), 0-based keypoint indices.
LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)

# The person's own left and right (not the viewer's), colour-blind safe (Okabe-Ito).
SIDE_COLOURS: dict[Side, str] = {"left": "#0072B2", "right": "#D55E00", "centre": "#009E73"}
BOX_COLOUR = "#F0E442"


def side(keypoint: int) -> Side:
    """The person's side a keypoint is on, from its COCO name."""
    name = KEYPOINT_NAMES[keypoint]
    if name.startswith("left"):
        return "left"
    if name.startswith("right"):
        return "right"
    return "centre"


def limb_side(limb: tuple[int, int]) -> Side:
    """A limb joining two points of one side is that side's; across the body it is centre."""
    a, b = side(limb[0]), side(limb[1])
    return a if a == b else "centre"


def _centre_x(p: Person) -> float:
    return (p.box[0] + p.box[2]) / 2


def order_from_left(ctx: ImageContext) -> list[int]:
    """Person indices sorted by box centre, left to right in the picture (ties: index)."""
    return sorted(range(len(ctx.persons)), key=lambda i: (_centre_x(ctx.persons[i]), i))


def person_labels(ctx: ImageContext) -> list[str]:
    """One label per person index: ``P1`` is the leftmost in the picture, as the teacher's text
    counts people ("the second person from the left" is P2). Stable for a given context."""
    labels = [""] * len(ctx.persons)
    for rank, i in enumerate(order_from_left(ctx), start=1):
        labels[i] = f"P{rank}"
    return labels
