"""`llava-pose verify` through the real CLI on COCO-MINI: our records, the LLaVA-Pose
release's naming, LLaVA's own; contexts from --coco or --contexts; bad input; claims read
with their negation and time (issue 16), a body that cannot be seated, "assistant" turns,
and work that grows linearly with the text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import one_line_error, perf_script

from llava_pose.cli import main


def conv(image: str | None, answer: str, rid: str = "r") -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": rid,
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is the man doing?"},
            {"from": "gpt", "value": answer},
            {"from": "human", "value": "And now?"},
            {"from": "gpt", "value": "He is standing."},
        ],
    }
    if image is not None:
        row["image"] = image
    return row


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps(rows))
    return str(path)


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "claims.jsonl").read_text().splitlines()]


def test_verify_matches_every_naming_and_counts_records_without_context(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # val2017 109313: one man, standing, facing the camera, playing Wii.
    data = write(
        tmp_path / "d.json",
        [
            conv("val2017/000000109313.jpg", "The man has his right arm raised.", "ours"),
            conv("data/coco/train2014/COCO_train2014_000000109313.jpg", "He is standing.", "rel"),
            conv("coco/train2017/000000109313.jpg", "He is facing the camera.", "mix"),
            conv("gqa/images/2354786.jpg", "The man is sitting.", "gqa"),
            {"id": "text-only", "conversations": [{"from": "human", "value": "hi"}]},
        ],
    )
    out = tmp_path / "out"
    rc = main(
        [
            "verify",
            "--data",
            data,
            "--coco",
            str(coco_mini),
            "--split",
            "val2017",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "5 records (2 without a context)" in printed
    got = {row["id"]: row for row in lines(out)}
    assert list(got) == ["ours", "rel", "mix", "gqa", "text-only"]
    assert got["gqa"]["context"] is False and got["text-only"]["context"] is False
    ours = got["ours"]
    assert ours["image_id"] == 109313
    first, second = ours["turns"]
    assert (first["turn"], second["turn"]) == (1, 3)  # gpt turns only
    assert [(c["kind"], c["verdict"]) for c in first["claims"]] == [("arm", "contradicted")]
    assert got["mix"]["turns"][0]["claims"][0]["kind"] == "facing"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 5 and summary["records_without_context"] == 2
    assert summary["contradicted"] == 1
    assert summary["records_with_contradiction"] == 1
    assert summary["claims"] == sum(summary["by_kind"]["posture"].values()) + sum(
        sum(v.values()) for k, v in summary["by_kind"].items() if k != "posture"
    )
    assert summary["contradicted_share"] == round(1 / summary["claims"], 4)


def test_verify_reads_contexts_from_prepare(tmp_path: Path, coco_mini: Path) -> None:
    contexts = tmp_path / "ctx.jsonl"
    assert (
        main(["prepare", "--coco", str(coco_mini), "--split", "val2017", "--out", str(contexts)])
        == 0
    )
    data = write(
        tmp_path / "d.json", [conv("val2017/000000109313.jpg", "His right arm is raised.")]
    )
    out = tmp_path / "out"
    assert main(["verify", "--data", data, "--contexts", str(contexts), "--out", str(out)]) == 0
    [row] = lines(out)
    assert row["turns"][0]["claims"][0]["kind"] == "arm"


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_offline_teacher_output_has_no_contradicted_claim(
    tmp_path: Path, coco_mini: Path, split: str
) -> None:
    gen = tmp_path / "gen"
    args = ["generate", "--coco", str(coco_mini), "--split", split, "--all-images"]
    assert main(["-q", *args, "--out", str(gen)]) == 0
    out = tmp_path / "out"
    args = ["verify", "--data", str(gen / "llava_pose_all.json"), "--coco", str(coco_mini)]
    assert main([*args, "--split", split, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["claims"] > 30 and summary["supported"] > 10
    assert summary["contradicted"] == 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "invalid JSON"),
        ('{"id": 1}', "expected a JSON list"),
        ('[{"id": "a", "conversations": [{"from": "gpt", "value": 3}]}]', "[0].conversations[0]"),
        ('[{"id": "a", "image": 5, "conversations": []}]', "[0].image"),
        (
            '[{"id": "a", "conversations": [{"from": "bot", "value": "He sits."}]}]',
            "[0].conversations[0].from: unknown speaker 'bot'",
        ),
        ('[{"id": "a", "conversations": [{"value": "He sits."}]}]', "unknown speaker None"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str], content: str, needle: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "out"
    rc = main(["verify", "--data", str(bad), "--coco", str(coco_mini), "--out", str(out)])
    one_line_error(capsys, rc, str(bad), needle)
    assert not out.exists()


def test_out_is_required(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write(tmp_path / "d.json", [])
    one_line_error(capsys, main(["verify", "--data", data]), "--out")


# -- issue 16: claims read for what the sentence says -------------------------------------------


def answer(image_id: int, text: str, rid: str, speaker: str = "gpt") -> dict[str, Any]:
    """A val2017 record: a question, then `text` said by `speaker`."""
    question = "human" if speaker == "gpt" else "user"
    return {
        "id": rid,
        "image": f"val2017/{image_id:012d}.jpg",
        "conversations": [
            {"from": question, "value": "<image>\nHow is the person posed?"},
            {"from": speaker, "value": text},
        ],
    }


def verify_val(tmp_path: Path, coco_mini: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Run `llava-pose verify` on `rows` against val2017; each record id -> its claims."""
    data = write(tmp_path / "answers.json", rows)
    out = tmp_path / "verified"
    args = ["verify", "--data", data, "--coco", str(coco_mini), "--split", "val2017"]
    assert main([*args, "--out", str(out)]) == 0
    return {
        row["id"]: [
            (c["kind"], c["predicate"], c["verdict"]) for t in row["turns"] for c in t["claims"]
        ]
        for row in lines(out)
    }


# val2017 109313: one man standing, facing the camera, both arms down (the right one hangs).
# 181303: a child standing on grass, facing the camera, a kite held over the head.
# 397133: a cook standing at the stove on the right, back to the camera.
TRUE_SENTENCES = {
    "not-raised": (
        109313,
        "The man does not have his arms raised.",
        [("arm", "not both arms raised", "supported")],
    ),
    "no-arm": (109313, "He has no arm raised.", [("arm", "not an arm raised", "supported")]),
    "never": (
        109313,
        "He never raises his right arm above his head.",
        [("arm", "not right arm above head", "supported")],
    ),
    "stopped": (
        109313,
        "He stopped raising his arms.",
        [("arm", "both arms raised", "unverifiable")],
    ),
    "hardly-ever": (
        181303,
        "The person hardly ever faces away from the camera.",
        [("facing", "facing away", "unverifiable")],
    ),
    "earlier-now": (
        397133,
        "The man on the right was sitting earlier but is now standing.",
        [("posture", "sitting", "unverifiable"), ("posture", "standing", "supported")],
    ),
    "might": (
        109313,
        "He might be sitting on the couch.",
        [("posture", "sitting", "unverifiable")],
    ),
    "unclear-reach": (
        109313,
        "He is not standing with his arms raised.",
        [("posture", "not standing", "unverifiable"), ("arm", "both arms raised", "unverifiable")],
    ),
}


def test_negated_hedged_and_past_claims_of_true_sentences_are_never_contradicted(
    tmp_path: Path, coco_mini: Path
) -> None:
    rows = [answer(image, text, rid) for rid, (image, text, _) in TRUE_SENTENCES.items()]
    got = verify_val(tmp_path, coco_mini, rows)
    for rid, (_, text, expected) in TRUE_SENTENCES.items():
        assert got[rid] == expected, text


def test_a_negation_scoped_on_a_clearly_true_claim_is_contradicted(
    tmp_path: Path, coco_mini: Path
) -> None:
    got = verify_val(
        tmp_path,
        coco_mini,
        [
            answer(397133, "The man on the right is not standing.", "cook"),
            answer(109313, "The man is not facing the camera.", "man"),
            answer(181303, "The child does not face the camera.", "child"),
        ],
    )
    assert got["cook"] == [("posture", "not standing", "contradicted")]
    assert got["man"] == [("facing", "not facing camera", "contradicted")]
    assert got["child"] == [("facing", "not facing camera", "contradicted")]


def test_sitting_is_contradicted_by_straight_hips_knees_and_full_thighs(
    tmp_path: Path, coco_mini: Path
) -> None:
    # 109313 and 181303: shoulders, hips and knees seen, hips and knees straight, thighs at
    # full length in line with the torso; an ankle is hidden behind a box / in the grass (v=1)
    rows = [
        answer(109313, "The man is sitting on the couch.", "man"),
        answer(109313, "He is not sitting.", "man-not"),
        answer(181303, "The child is sitting on the grass.", "child"),
    ]
    data = write(tmp_path / "answers.json", rows)
    out = tmp_path / "verified"
    args = ["verify", "--data", data, "--coco", str(coco_mini), "--split", "val2017"]
    assert main([*args, "--out", str(out)]) == 0
    claims = {row["id"]: row["turns"][0]["claims"] for row in lines(out)}
    for rid, verdict in (
        ("man", "contradicted"),
        ("man-not", "supported"),
        ("child", "contradicted"),
    ):
        [claim] = claims[rid]
        assert (claim["kind"], claim["verdict"]) == ("posture", verdict), rid
        assert claim["reason"].startswith("hips and knees straight, thighs at full length")


def test_assistant_turns_are_the_models_and_are_checked(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = verify_val(
        tmp_path,
        coco_mini,
        [
            answer(397133, "The man on the right is standing.", "chat", speaker="assistant"),
            answer(397133, "The man on the right is standing.", "llava", speaker="gpt"),
            answer(397133, "The man on the right is standing.", "upper", speaker="Assistant"),
        ],
    )
    expected = [("posture", "standing", "supported")]
    assert got == {"chat": expected, "llava": expected, "upper": expected}
    assert "3 records (0 without a context), 3 pose claims" in capsys.readouterr().out


def _cli_calls(tmp_path: Path, coco_mini: Path, text: str) -> int:
    """Python function calls (and generator resumptions) of one `llava-pose verify` run on a
    record whose answer is `text`: a count of work that, unlike time, does not vary."""
    data = write(tmp_path / "long.json", [answer(109313, text, "long")])
    args = ["verify", "--data", data, "--coco", str(coco_mini), "--split", "val2017"]
    rc, n = perf_script("verify_speed").count_calls(main, [*args, "--out", str(tmp_path / "long")])
    assert rc == 0
    return n


def test_work_grows_linearly_with_the_answer(tmp_path: Path, coco_mini: Path) -> None:
    # issue 16: "The man is sitting. " x 20k took 15 s, x 100k over 300 s (quadratic). The
    # run's fixed cost (reading COCO, starting) cancels out in the differences.
    unit = "The man is sitting. He is not raising his arms, and he was sitting earlier. "
    _cli_calls(tmp_path, coco_mini, unit)  # imports and word lists, once
    base, double, eleven = (_cli_calls(tmp_path, coco_mini, unit * n) for n in (50, 100, 550))
    assert (eleven - base) / (double - base) <= 10.5  # 10 for linear work
