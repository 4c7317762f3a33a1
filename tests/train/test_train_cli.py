"""The commands end to end: train, chat, export, and their errors (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.train.llava_records import coco_records, train_args, write_records
from tests.train.release_records import coco2014_root, release_records

from llava_pose.cli import main

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[2]


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom llava_pose.cli import main\n"
        "for cmd in ([], ['train'], ['chat'], ['export']):\n"
        "    try:\n        main([*cmd, '--help'])\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert (
        "--lora-r" in done.stdout and "--projector-lr" in done.stdout and "--image" in done.stdout
    )


@pytest.mark.slow
def test_train_then_chat_then_export(
    full_run: Path,
    lora_run: Path,
    coco_mini: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = str(sorted((coco_mini / "val2017").iterdir())[0])
    capsys.readouterr()
    args = ["chat", "--model", str(full_run), "--image", image, "--max-new-tokens", "6"]
    assert main([*args, "What is happening?", "And then?"]) == 0
    out = capsys.readouterr().out
    assert out.count("USER: ") == 2 and "USER: And then?\nASSISTANT:" in out
    answers = [block.split("ASSISTANT:", 1)[1].strip() for block in out.split("USER: ")[1:]]
    assert all(answers), out  # the streamed tokens reached the terminal
    assert (
        main(["chat", "--model", str(lora_run), "--image", image, "Hi", "--max-new-tokens", "3"])
        == 0
    )
    merged = tmp_path / "merged"
    assert main(["export", str(lora_run), "--output", str(merged)]) == 0
    assert (merged / "config.json").is_file() and (merged / "tokenizer.json").is_file()
    assert main(["export", str(lora_run), "--output", str(merged)]) == 2  # never overwrite
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(full_run), "--output", str(tmp_path / "x")]) == 2
    assert "not a LoRA run" in capsys.readouterr().err


def test_chat_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["chat", "--model", str(tmp_path), "--image", str(tmp_path / "none.jpg"), "Hi"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none.jpg: image not found" in err
    assert main(["export", str(tmp_path)]) == 2
    assert "give --output DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_data_stops_with_the_list_or_is_skipped(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = coco_records(coco_mini, 4)
    bad = {**good[0], "id": "lost", "image": "train2017/000000000000.jpg"}
    data = write_records(tmp_path / "data.json", [*good, bad])
    out = tmp_path / "run"
    assert main(train_args(data, coco_mini, out, "--max-steps", "2")) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("llava-pose: error: 1 of 5 records are bad") and "--skip-bad" in last
    assert "lost" in err and "image not found" in err
    listed = [json.loads(line) for line in (out / "bad_records.jsonl").read_text().splitlines()]
    assert listed == [{"id": "lost", "file": str(data), "index": 4, "reason": listed[0]["reason"]}]
    assert f"{data}: [4] (id 'lost'): " in err
    assert not list(out.glob("checkpoint-*")) and not (out / "llava_pose_run.json").exists()
    assert main(train_args(data, coco_mini, out, "--max-steps", "2", "--skip-bad")) == 0
    run = json.loads((out / "llava_pose_run.json").read_text())
    assert run["data"]["used"] == 4 and run["data"]["bad"] == 1


def test_check_only_validates(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_records(tmp_path / "data.json", coco_records(coco_mini, 3))
    args = [
        "train",
        "--check",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--image-root",
        str(coco_mini),
    ]
    assert main([*args, "--output", str(tmp_path / "run")]) == 0
    assert "3 records: 3 usable (3 with an image, 0 text-only)" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_records(tmp_path / "d.json", [])
    base = ["train", "--model", "tiny", "--data", str(data), "--output", str(tmp_path / "r")]
    for extra, expected in [
        (["--qlora"], "--qlora needs a CUDA GPU"),
        (["--deepspeed", "zero3"], "pip install -e '.[deepspeed]'"),
        (["--deepspeed", str(tmp_path / "ds.json")], "ds.json: no such file"),
        (["--precision", "bf16"], "--precision bf16 needs a CUDA GPU"),
    ]:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, (extra, err)


def test_module_entry_point_reads_a_config_file(tmp_path: Path, coco_mini: Path) -> None:
    data = write_records(tmp_path / "data.json", coco_records(coco_mini, 2))
    config = tmp_path / "recipe.yaml"
    config.write_text(f"model: tiny\ndata: [{data}]\nimage_root: {coco_mini}\ncheck: true\n")
    done = subprocess.run(
        [sys.executable, "-m", "llava_pose.train", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "2 records: 2 usable" in done.stdout


def test_check_reads_the_llava_pose_release_records(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, ids = coco2014_root(tmp_path / "coco", coco_mini, 2)
    rows = release_records(ids)  # data/coco/train2014/<2017 name>, ids repeated per image
    rows[4]["image"] = "data/coco/train2014/000000000001.jpg"  # no such image in any name
    data = write_records(tmp_path / "generated_data_conversation.json", rows)
    out = tmp_path / "run"
    args = ["train", "--check", "--model", "tiny", "--data", str(data), "--image-root", str(root)]
    assert main([*args, "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert "6 records: 5 usable (5 with an image, 0 text-only); 1 bad (1 image not found)" in (
        captured.out
    )
    assert f"{data}: 4 record(s) repeat an earlier record's id" in captured.err
    # the bad record is named unambiguously: the fifth record, the second of its image
    (listed,) = [json.loads(line) for line in (out / "bad_records.jsonl").read_text().splitlines()]
    assert (listed["id"], listed["file"]) == (f"{ids[1]}#2", str(data))
    assert listed["reason"].startswith("image not found")
    rows[4]["image"] = rows[3]["image"]
    write_records(data, rows)
    assert main([*args, "--output", str(tmp_path / "run2")]) == 0
    assert "6 records: 6 usable (6 with an image" in capsys.readouterr().out


def test_an_image_outside_the_root_is_a_one_line_input_error(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = coco_records(coco_mini, 2)
    rows[1]["image"] = "train2017/../../secret/key.jpg"
    data = write_records(tmp_path / "data.json", rows)
    out = tmp_path / "run"
    assert main(train_args(data, coco_mini, out, "--max-steps", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith(f"llava-pose: error: {data}: [1].image (id '{rows[1]['id']}'): ")
    assert "climbs out of the data root" in err
    assert not out.exists()  # nothing written: no bad_records.jsonl, no run folder
