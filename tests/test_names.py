"""Naming people: by order from the left, by size, by what they hold; never ambiguously."""

from __future__ import annotations

from tests.poseqa.people import SITTING, STANDING, image, person

from llava_pose.names import name_people
from llava_pose.records import Obj


def test_lone_person() -> None:
    names = name_people(image(person(STANDING)))
    assert names.positional == {0: "the person"} and names.best(0) == "the person"


def test_order_from_the_left_whatever_the_annotation_order() -> None:
    ctx = image(person(STANDING, dx=0.3), person(STANDING, dx=-0.3), person(SITTING))
    assert name_people(ctx).positional == {
        0: "the person furthest to the right",
        1: "the person furthest to the left",
        2: "the person in the middle",
    }


def test_people_side_by_side_get_no_order() -> None:
    ctx = image(person(STANDING), person(STANDING, dx=0.05))
    assert name_people(ctx).positional == {}


def test_a_crowd_region_means_no_names() -> None:
    names = name_people(image(person(STANDING)), crowd=True)
    assert names.positional == {} and names.other == {}


def test_largest_and_holding() -> None:
    small = person({k: (0.8 + (x - 0.5) / 4, 0.6 + y / 4) for k, (x, y) in STANDING.items()})
    big = person(STANDING, dx=-0.2)
    assert name_people(image(big, small)).other == {0: "the largest person"}
    kite = Obj("kite", (0.7, 0.65, 0.78, 0.75))  # around the small person's right wrist
    names = name_people(image(big, small, objects=(kite,)))
    assert names.other == {0: "the largest person", 1: "the person holding the kite"}
    # A second kite: "the kite" no longer says which, so the holder is not named by it.
    other_kite = Obj("kite", (0.0, 0.0, 0.05, 0.05))
    assert name_people(image(big, small, objects=(kite, other_kite))).other == {
        0: "the largest person"
    }
