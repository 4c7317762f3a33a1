from llava_pose.records import ImageContext, Person
from llava_pose.skeleton import LIMBS, limb_side, person_labels, side


def _person(x1: float, x2: float) -> Person:
    return Person(box=(x1, 0.1, x2, 0.9), keypoints=((0.0, 0.0, 0),) * 17)


def test_limbs_match_coco_skeleton_one_based() -> None:
    coco = [
        [16, 14],
        [14, 12],
        [17, 15],
        [15, 13],
        [12, 13],
        [6, 12],
        [7, 13],
        [6, 7],
        [6, 8],
        [7, 9],
        [8, 10],
        [9, 11],
        [2, 3],
        [1, 2],
        [1, 3],
        [2, 4],
        [3, 5],
        [4, 6],
        [5, 7],
    ]
    assert [list(x) for x in LIMBS] == [[a - 1, b - 1] for a, b in coco]


def test_sides() -> None:
    assert side(0) == "centre" and side(5) == "left" and side(6) == "right"
    assert limb_side((5, 7)) == "left" and limb_side((5, 6)) == "centre"


def test_labels_count_from_the_left() -> None:
    ctx = ImageContext(
        1, "a.jpg", 10, 10, (), persons=(_person(0.6, 0.8), _person(0.0, 0.2), _person(0.3, 0.5))
    )
    assert person_labels(ctx) == ["P3", "P1", "P2"]
