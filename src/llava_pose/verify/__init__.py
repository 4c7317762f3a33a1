"""Pose claims in free English text, checked against one image's keypoints.

`check_text(text, context)` finds the sentences that say something about a body (posture,
arms, legs, facing, place in the picture, order among people, which hand or foot is higher),
resolves who each one is about, and labels it supported, contradicted or unverifiable with
the geometry of `llava_pose.pose`. `summarize(claims)` counts them.

"Contradicted" throws paid data away, so it is said only when the geometry clearly says the
opposite, with margins wider than the ones `pose.py` uses to say a fact: a foreshortened limb,
a hidden (v=1) joint, a subject that might be someone else, a posture the text and a photo
routinely disagree on (a surfer "standing" in a crouch) all give "unverifiable". A claim is
read with its polarity and time: "does not have his arms raised" is checked as a negation;
"was sitting earlier", "stopped raising", "might be" and "hardly ever" are unverifiable; a
true sentence is never contradicted. The parser is a small pattern matcher over the
vocabulary in ``data/verify/*.yaml``, not a grammar: it skips what it cannot place (advice,
plans, questions) rather than guess, and its time is linear in the text's length.

Modules: `text` (vocabulary, tokens), `subjects` (who), `predicates` (what), `scope` (how the
sentence holds it), `geometry` (what the keypoints say), `check` (verdicts), `score`.
"""

from __future__ import annotations

from .check import Claim, check_text
from .score import align, precision_recall, summarize
from .text import KINDS, VERDICTS, ClaimKind, Truth, Verdict, speakers, vocab

__all__ = [
    "KINDS",
    "VERDICTS",
    "Claim",
    "ClaimKind",
    "Truth",
    "Verdict",
    "align",
    "check_text",
    "precision_recall",
    "speakers",
    "summarize",
    "vocab",
]
