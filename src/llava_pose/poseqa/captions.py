"""PoseQA's posture answers against the captions' posture words: an outside check of the
geometry. Captions describe an image's main person: where that is the only person or clearly
the largest (`names.LARGEST_RATIO`) and the captions decide the posture (at least two mention
one posture, none the other), the clear posture PoseQA asks about must match. Pure."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from ..names import largest_name
from ..records import ImageContext

# Captions decide a posture when at least this many mention it and none mentions the other.
MIN_CAPTIONS = 2


@functools.cache
def posture_words() -> dict[str, frozenset[str]]:
    text = resources.files("llava_pose").joinpath("data/poseqa/captions.yaml").read_text("utf-8")
    data: dict[str, list[str]] = yaml.safe_load(text)
    return {k: frozenset(v) for k, v in data.items()}


def caption_postures(caption: str) -> set[str]:
    """The postures a caption's words name."""
    words = set(re.findall(r"[a-z]+", caption.lower()))
    return {posture for posture, names in posture_words().items() if words & names}


def captions_decide(captions: tuple[str, ...] | list[str]) -> str | None:
    """The posture the captions agree on, or None when they do not decide."""
    counts = {posture: 0 for posture in posture_words()}
    for c in captions:
        for posture in caption_postures(c):
            counts[posture] += 1
    said = [p for p, n in counts.items() if n > 0]
    if len(said) == 1 and counts[said[0]] >= MIN_CAPTIONS:
        return said[0]
    return None


@dataclass
class Agreement:
    """Persons whose posture PoseQA asks about, by what their image's captions say."""

    agree: int = 0
    disagree: int = 0
    undecided: int = 0  # captions silent or mixed
    not_main: int = 0  # not the image's main person: a caption cannot be pinned on them
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agree": self.agree,
            "disagree": self.disagree,
            "captions_undecided": self.undecided,
            "not_main_person": self.not_main,
            "disagreements": self.disagreements,
        }

    def line(self) -> str:
        decided = self.agree + self.disagree
        return (
            f"posture vs captions: {self.agree} of {decided} main persons agree "
            f"({self.disagree} disagree; captions undecided for {self.undecided}; "
            f"{self.not_main} not their image's main person)"
        )


def posture_agreement(rows: list[dict[str, Any]], contexts: dict[str, ImageContext]) -> Agreement:
    """Compare each person's asked posture (question ``fact``) with their image's captions."""
    out = Agreement()
    seen: set[tuple[str, int]] = set()
    for r in rows:
        if r["category"] != "posture":
            continue
        (person,) = r["persons"]
        key = (r["image"], person)
        if key in seen:
            continue
        seen.add(key)
        ctx = contexts[r["image"]]
        if len(ctx.persons) != 1 and person not in largest_name(ctx):
            out.not_main += 1
            continue
        said = captions_decide(ctx.captions)
        posture = r["fact"]["posture"]
        if said is None:
            out.undecided += 1
        elif said == posture:
            out.agree += 1
        else:
            out.disagree += 1
            out.disagreements.append(
                {"image_id": ctx.image_id, "poseqa": posture, "captions": said}
            )
    return out
