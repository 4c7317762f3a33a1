"""The rewards `train --method grpo` learns from: checked against the keypoints, no judge.

Two kinds, one per kind of prompt, each a plain function of a reply and what it is checked
against (pure, no torch):

* `exact_match` (PoseQA questions): 1 when PoseQA's strict parser (`poseqa.answers`) reads
  exactly the gold answer from the reply, else 0. A hedged, listed, negated or unreadable
  reply earns nothing, as `poseqa score` counts it wrong.
* `claims_reward` (free-text prompts: the detail and reasoning tasks): the pose claims that
  `verify` finds in the reply, checked against the image's keypoints. Supported claims earn,
  contradicted claims cost, unverifiable ones are neutral:
  ``(supported - contradicted) / (supported + contradicted)``, in [-1, 1], and 0 for a reply
  that makes no checkable claim. It is a share, not a count, so a longer reply is not paid for
  repeating what it already said.

No format or length term is added: each reward is what the benchmark or the checker scores.

`poseqa_exact_match` and `pose_claims` are the same functions in TRL's reward signature
(``completions`` plus the dataset's columns, here ``task``: one `PromptTask` per completion).
Each scores only its own kind of prompt and returns None for the other, which GRPOTrainer
leaves out of that prompt's reward. Through TRL's ``log_metric`` they report every step the
mean reward per family (``reward/<family>``: a PoseQA category, or the free-text task) and, for
the free-text answers, the claims per answer (``claims/per_answer``) and the share of those
claims that are contradicted (``claims/contradicted_rate``, verify's ``contradicted_share``: 0
when no claim was made) or supported (``claims/supported_rate``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..poseqa.answers import parse_answer
from ..records import ImageContext
from ..verify import check_text

EXACT, CLAIMS = "exact_match", "claims"


@dataclass(frozen=True)
class PromptTask:
    """What one prompt's replies are scored against: a PoseQA question (`question`: its
    ``answer``, ``answer_type``, ``choices`` and ``text``, as in questions.jsonl) or the
    image's context (`context`) for the claims. `family` names it in the logs."""

    family: str
    question: Mapping[str, Any] | None = None
    context: ImageContext | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return EXACT if self.question is not None else CLAIMS


# -- the rewards --------------------------------------------------------------------------------


def exact_match(text: str, question: Mapping[str, Any]) -> float:
    """1.0 when the strict parser reads exactly the question's answer from `text`, else 0.0
    (wrong, hedged or unparseable)."""
    return 1.0 if parse_answer(text, question) == str(question["answer"]) else 0.0


@dataclass(frozen=True)
class ClaimTally:
    """The verdicts of one reply's pose claims."""

    supported: int = 0
    contradicted: int = 0
    unverifiable: int = 0

    @property
    def claims(self) -> int:
        return self.supported + self.contradicted + self.unverifiable

    @property
    def reward(self) -> float:
        """(supported - contradicted) / (supported + contradicted); 0 without either."""
        decided = self.supported + self.contradicted
        return (self.supported - self.contradicted) / decided if decided else 0.0


def tally_claims(text: str, context: ImageContext) -> ClaimTally:
    """What `verify` says of each pose claim of `text` about the image of `context`."""
    counts = dict.fromkeys(("supported", "contradicted", "unverifiable"), 0)
    for claim in check_text(text, context):
        counts[claim.verdict] += 1
    return ClaimTally(**counts)


def claims_reward(text: str, context: ImageContext) -> float:
    """`ClaimTally.reward` of `text`: supported claims earn, contradicted cost, unverifiable
    are neutral."""
    return tally_claims(text, context).reward


# -- the same, as TRL reward functions ----------------------------------------------------------

LogMetric = Callable[[str, float], None]


def completion_text(completion: Any) -> str:
    """A TRL completion's text: a string, or conversational messages (the assistant's)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [p.get("text", "") for p in content if p.get("type") == "text"]
    return "".join(parts)


def _log_families(
    rewards: Sequence[float | None], tasks: Sequence[PromptTask], log_metric: LogMetric | None
) -> None:
    if log_metric is None:
        return
    per: dict[str, list[float]] = defaultdict(list)
    for reward, task in zip(rewards, tasks, strict=True):
        if reward is not None:
            per[task.family].append(reward)
    for family, values in sorted(per.items()):
        log_metric(f"reward/{family}", sum(values) / len(values))


def poseqa_exact_match(
    completions: Sequence[Any],
    task: Sequence[PromptTask],
    log_metric: LogMetric | None = None,
    **_: Any,
) -> list[float | None]:
    """`exact_match` per completion of a PoseQA prompt; None for the other prompts."""
    out: list[float | None] = [
        exact_match(completion_text(c), t.question) if t.question is not None else None
        for c, t in zip(completions, task, strict=True)
    ]
    _log_families(out, task, log_metric)
    return out


def pose_claims(
    completions: Sequence[Any],
    task: Sequence[PromptTask],
    log_metric: LogMetric | None = None,
    **_: Any,
) -> list[float | None]:
    """`claims_reward` per completion of a free-text prompt; None for the other prompts."""
    out: list[float | None] = []
    total = ClaimTally()
    for c, t in zip(completions, task, strict=True):
        if t.context is None or t.question is not None:
            out.append(None)
            continue
        tally = tally_claims(completion_text(c), t.context)
        total = ClaimTally(
            total.supported + tally.supported,
            total.contradicted + tally.contradicted,
            total.unverifiable + tally.unverifiable,
        )
        out.append(tally.reward)
    _log_families(out, task, log_metric)
    answers = sum(r is not None for r in out)
    if log_metric is not None and answers:
        log_metric("claims/per_answer", total.claims / answers)
        log_metric("claims/contradicted_rate", total.contradicted / max(total.claims, 1))
        log_metric("claims/supported_rate", total.supported / max(total.claims, 1))
    return out


REWARDS: dict[str, Callable[..., list[float | None]]] = {
    EXACT: poseqa_exact_match,
    CLAIMS: pose_claims,
}
