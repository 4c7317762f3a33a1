"""Constructed people for the PoseQA tests: keypoints by name, in a 1000 x 1000 image."""

from __future__ import annotations

from llava_pose.records import KEYPOINT_NAMES, ImageContext, Obj, Person

SIZE = 1000


def person(points: dict[str, tuple[float, float]], v: int = 2, dx: float = 0.0) -> Person:
    """A person from normalized points (unlisted joints unlabelled), shifted right by dx."""
    kps = tuple(
        (round(points[n][0] + dx, 3), points[n][1], v) if n in points else (0.0, 0.0, 0)
        for n in KEYPOINT_NAMES
    )
    xs = [x for x, _, vv in kps if vv]
    ys = [y for _, y, vv in kps if vv]
    box = (max(0.0, min(xs) - 0.03), max(0.0, min(ys) - 0.05), min(1.0, max(xs) + 0.03), max(ys))
    return Person(box=box, keypoints=kps)


# Standing, facing the camera: the person's left side on the viewer's right; arms down.
STANDING: dict[str, tuple[float, float]] = {
    "nose": (0.5, 0.1),
    "left eye": (0.51, 0.09),
    "right eye": (0.49, 0.09),
    "left ear": (0.53, 0.1),
    "right ear": (0.47, 0.1),
    "left shoulder": (0.58, 0.2),
    "right shoulder": (0.42, 0.2),
    "left elbow": (0.6, 0.35),
    "right elbow": (0.4, 0.35),
    "left wrist": (0.6, 0.5),
    "right wrist": (0.4, 0.5),
    "left hip": (0.54, 0.5),
    "right hip": (0.46, 0.5),
    "left knee": (0.54, 0.7),
    "right knee": (0.46, 0.7),
    "left ankle": (0.54, 0.9),
    "right ankle": (0.46, 0.9),
}
# The same person with the right arm raised over the head.
RIGHT_ARM_UP = {**STANDING, "right elbow": (0.38, 0.12), "right wrist": (0.38, 0.0)}
# Sitting side-on, facing the picture's right: thighs level, shins hanging.
SITTING: dict[str, tuple[float, float]] = {
    "nose": (0.56, 0.2),
    "left ear": (0.5, 0.2),
    "left shoulder": (0.5, 0.3),
    "right shoulder": (0.5, 0.3),
    "left elbow": (0.52, 0.45),
    "left wrist": (0.6, 0.5),
    "left hip": (0.5, 0.6),
    "right hip": (0.5, 0.6),
    "left knee": (0.7, 0.6),
    "right knee": (0.7, 0.6),
    "left ankle": (0.7, 0.85),
    "right ankle": (0.7, 0.85),
}


def image(
    *persons: Person, objects: tuple[Obj, ...] = (), captions: tuple[str, ...] = ()
) -> ImageContext:
    return ImageContext(
        image_id=1,
        image="val2017/000000000001.jpg",
        width=SIZE,
        height=SIZE,
        captions=captions or ("A picture.",),
        objects=objects,
        persons=persons,
    )
