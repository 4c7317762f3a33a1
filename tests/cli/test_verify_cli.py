"""`llava-pose verify` through the real CLI on COCO-MINI: our records, the LLaVA-Pose
release's naming, LLaVA's own; contexts from --coco or --contexts; bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import one_line_error

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
