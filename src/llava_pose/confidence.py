"""Estimated keypoints, read with their confidence: which joints a fact may stand on.

An annotator's keypoint is a fact; a pose model's is a guess with a score (`records.Estimate`).
The offline teacher, `verify` and PoseQA state or judge poses from keypoints, so they read an
estimated person through `trusted`: a joint scored below the threshold that made it visible
(its person's ``thresholds[1]``, whatever v the file says) counts as not labelled, so no
sentence, verdict or question stands on it. PoseQA asks more (`confident`): a floor on every
joint's score and on the person's own score. Annotated persons pass through unchanged, and a
context without an estimated person is returned as the same object (callers cache by
identity).
"""

from __future__ import annotations

import msgspec

from .records import NO_KEYPOINTS, NUM_KEYPOINTS, UNLABELLED, Estimate, ImageContext, Person


def estimate_problem(est: Estimate) -> tuple[str, str] | None:
    """(field, problem) of an `Estimate` that cannot be read as one, or None. Pure."""
    if len(est.keypoint_scores) != NUM_KEYPOINTS:
        n = len(est.keypoint_scores)
        return "keypoint_scores", f"expected {NUM_KEYPOINTS} scores, got {n}"
    for j, s in enumerate(est.keypoint_scores):
        if not 0.0 <= s <= 1.0:  # NaN fails too
            return f"keypoint_scores[{j}]", f"must be 0 to 1, got {s:g}"
    if not 0.0 <= est.score <= 1.0:
        return "score", f"must be 0 to 1, got {est.score:g}"
    low, high = est.thresholds
    if not 0.0 <= low <= high <= 1.0:
        return (
            "thresholds",
            "expected (labelled, visible) with 0 <= labelled <= visible <= 1, "
            f"got ({low:g}, {high:g})",
        )
    return None


def is_estimated(ctx: ImageContext) -> bool:
    """Whether any person of `ctx` was placed by a pose model rather than annotated."""
    return any(p.estimate is not None for p in ctx.persons)


def confident(person: Person, min_keypoint: float = 0.0, min_person: float = 0.0) -> Person:
    """`person` with every joint below its visible threshold or `min_keypoint` unlabelled,
    and every joint unlabelled when the person's own score is below `min_person`. Pure."""
    est = person.estimate
    if est is None:
        return person
    if est.score < min_person:
        return msgspec.structs.replace(person, keypoints=NO_KEYPOINTS)
    floor = max(est.thresholds[1], min_keypoint)
    points = tuple(
        point if score >= floor else UNLABELLED
        for point, score in zip(person.keypoints, est.keypoint_scores, strict=True)
    )
    if points == person.keypoints:
        return person
    return msgspec.structs.replace(person, keypoints=points)


def trusted(ctx: ImageContext, min_keypoint: float = 0.0, min_person: float = 0.0) -> ImageContext:
    """`ctx` with each estimated person read through `confident`; `ctx` itself when nothing
    changes. Pure."""
    if not is_estimated(ctx):
        return ctx
    persons = tuple(confident(p, min_keypoint, min_person) for p in ctx.persons)
    if all(a is b for a, b in zip(persons, ctx.persons, strict=True)):
        return ctx
    return msgspec.structs.replace(ctx, persons=persons)
