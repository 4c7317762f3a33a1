"""`llava-pose export --format llamafactory|trl|hf`: the record conversions on plain data, then
the real CLI on a real generated dataset of COCO-MINI, its dataset card, and its errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import cli, generate_args, one_line_error

from llava_pose.export import (
    dataset_info,
    filters_table,
    hf_row,
    llamafactory_row,
    provenance,
    trl_row,
    verify_text,
)
from llava_pose.filters import FILTERS

REPO = Path(__file__).resolve().parents[2]
TURNS = (
    ("human", "<image>\nWhat is the man doing?"),
    ("gpt", "He is riding a wave."),
    ("human", "Is he standing?"),
    ("gpt", "Yes, with his knees bent."),
)
TEXT_TURNS = (("human", "Which joints does a squat bend?"), ("gpt", "Hips, knees and ankles."))


# -- records -> rows -----------------------------------------------------------------------------


def test_llamafactory_row_is_the_llava_record() -> None:
    assert llamafactory_row("1-conv", "val2017/1.jpg", TURNS) == {
        "id": "1-conv",
        "image": "val2017/1.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is the man doing?"},
            {"from": "gpt", "value": "He is riding a wave."},
            {"from": "human", "value": "Is he standing?"},
            {"from": "gpt", "value": "Yes, with his knees bent."},
        ],
    }
    assert llamafactory_row("7", None, TEXT_TURNS) == {
        "id": "7",
        "conversations": [
            {"from": "human", "value": "Which joints does a squat bend?"},
            {"from": "gpt", "value": "Hips, knees and ankles."},
        ],
    }


def test_hf_row_keeps_the_image_token() -> None:
    assert hf_row("1-conv", "val2017/1.jpg", TURNS) == {
        "id": "1-conv",
        "messages": [
            {"role": "user", "content": "<image>\nWhat is the man doing?"},
            {"role": "assistant", "content": "He is riding a wave."},
            {"role": "user", "content": "Is he standing?"},
            {"role": "assistant", "content": "Yes, with his knees bent."},
        ],
        "images": ["val2017/1.jpg"],
    }
    assert hf_row("7", None, TEXT_TURNS)["images"] == []


def test_trl_row_moves_the_image_into_a_content_part() -> None:
    assert trl_row("1-conv", "val2017/1.jpg", TURNS) == {
        "id": "1-conv",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "What is the man doing?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "He is riding a wave."}]},
            {"role": "user", "content": [{"type": "text", "text": "Is he standing?"}]},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Yes, with his knees bent."}],
            },
        ],
        "images": ["val2017/1.jpg"],
    }
    assert trl_row("7", None, TEXT_TURNS) == {
        "id": "7",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Which joints does a squat bend?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Hips, knees and ankles."}]},
        ],
        "images": [],
    }


def test_dataset_info_entry_reads_llava_json_as_sharegpt() -> None:
    assert dataset_info("pose", "pose.json") == {
        "pose": {
            "file_name": "pose.json",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "image"},
            "tags": {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
            },
        }
    }


# -- the card's parts ----------------------------------------------------------------------------


def test_card_facts_come_from_stats_and_verify() -> None:
    stats = {
        "teacher": "openai:gpt-4o",
        "source": "/data/coco",
        "split": "train2017",
        "prompt_sha256": "ab" * 32,
        "filtered": {"mentions_source": 3, "truncated": 1},
        "pose_claims": {"checked": True},
        "samples": {"conversation": 5, "detail": 4, "all": 9},
        "complete": False,
    }
    text = provenance(stats, "llava_pose_all.json")
    assert "`/data/coco`, split `train2017`" in text and "`openai:gpt-4o`" in text
    assert f"`{'ab' * 32}`" in text and "conversation 5, detail 4" in text
    assert "**not complete**" in text
    assert "not a `llava-pose generate` output" in provenance(None, "mix.json")
    assert "none (the teacher reads no prompt)" in provenance({"prompt_sha256": None}, "x.json")

    table = filters_table(stats, bad=2)
    assert "| `mentions_source` | 3 |" in table and "| `truncated` | 1 |" in table
    assert (
        "| `contradicts_pose` | 0 |" in table and "| left out by export `--skip-bad` | 2 |" in table
    )
    assert all(f"`{name}`" in table for name in FILTERS)
    unchecked = filters_table({**stats, "pose_claims": {"checked": False}}, bad=0)
    assert "| `contradicts_pose` | off |" in unchecked

    summary = {"records": 9, "claims": 40, "contradicted": 2, "contradicted_share": 0.05,
               "by_kind": {"posture": 10, "facing": 30}}  # fmt: skip
    shown = verify_text(summary, records=9)
    assert "| claims | 40 |" in shown and "| contradicted share | 5.0% |" in shown
    assert "| by kind | posture 10, facing 30 |" in shown and "this export has" not in shown
    assert "`verify` read 9 records; this export has 7." in verify_text(summary, records=7)
    assert "Not run" in verify_text(None, records=7)


# -- the CLI on a generated dataset --------------------------------------------------------------


def test_llamafactory_export(exported, generated: Path, coco_mini: Path) -> None:
    out = exported("llamafactory")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "dataset_info.json",
        "llava_pose.json",
    ]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == dataset_info("llava_pose", "llava_pose.json")
    # our LLaVA JSON trains unchanged: the export holds the generated records as they were
    source = json.loads((generated / "llava_pose_all.json").read_text())
    assert json.loads((out / "llava_pose.json").read_text()) == source
    card = (out / "README.md").read_text()
    stats = json.loads((generated / "stats.json").read_text())
    assert f"{len(source)} records about {stats['images']} images" in card
    assert "`rules`" in card and "split `val2017`" in card
    assert "none (the teacher reads no prompt)" in card
    assert f"media_dir: {coco_mini.resolve()}" in card and f"dataset_dir: {out.resolve()}" in card


def test_hf_export_loads_with_datasets(exported, generated: Path, coco_mini: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = exported("hf")
    ds = datasets.load_from_disk(str(out))
    source = json.loads((generated / "llava_pose_all.json").read_text())
    assert ds.column_names == ["id", "messages", "images"] and ds.num_rows == len(source)
    for row, record in zip(ds, source, strict=True):
        turns = tuple((t["from"], t["value"]) for t in record["conversations"])
        assert row == hf_row(record["id"], record["image"], turns)
        assert all((coco_mini / image).is_file() for image in row["images"])
    assert "<image>" in ds[0]["messages"][0]["content"]
    assert "Hugging Face `datasets` copy" in (out / "README.md").read_text()


def test_trl_export_has_no_image_token(exported, generated: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = exported("trl")
    ds = datasets.load_from_disk(str(out))
    source = json.loads((generated / "llava_pose_all.json").read_text())
    assert ds.column_names == ["id", "messages", "images"] and ds.num_rows == len(source)
    for row in ds:
        texts = [p["text"] for m in row["messages"] for p in m["content"] if p["type"] == "text"]
        assert not any("<image>" in t for t in texts)
        first = row["messages"][0]["content"]
        assert first[0] == {"type": "image", "text": None} and len(row["images"]) == 1
    template = (out / "llava_1_5_vicuna_v1.jinja").read_text()
    assert "{% generation %}" in template
    assert (
        f'chat_template_path="{out.resolve()}/llava_1_5_vicuna_v1.jinja"'
        in (out / "README.md").read_text()
    )


def test_verify_summary_goes_into_the_card(
    generated: Path, coco_mini: Path, tmp_path: Path
) -> None:
    data = generated / "llava_pose_all.json"
    verified = tmp_path / "verify"
    coco = ("--coco", coco_mini, "--split", "val2017")
    assert cli("verify", "--data", data, *coco, "--out", verified) == 0
    summary = json.loads((verified / "summary.json").read_text())
    out = tmp_path / "lf"
    args = ("export", data, "--format", "llamafactory", "--verify", verified, "--output", out)
    assert cli(*args) == 0  # a LLaVA JSON file as the source; --output as before
    card = (out / "README.md").read_text()
    assert f"| records | {summary['records']} |" in card
    assert f"| claims | {summary['claims']} |" in card
    assert f"| supported | {summary['supported']} |" in card
    assert "Not run for this export" not in card and "this export has" not in card


def test_prompt_sha256_names_the_prompts_sent(server, tmp_path: Path) -> None:
    def digest(out: Path, *extra: object) -> str:
        assert cli(*generate_args(server.url, out, *extra, images=1)) == 0
        return json.loads((out / "stats.json").read_text())["prompt_sha256"]

    paper = digest(tmp_path / "paper")
    assert re.fullmatch(r"[0-9a-f]{64}", paper)
    assert digest(tmp_path / "again") == paper  # the same prompts: the same digest
    assert digest(tmp_path / "compact", "--format", "compact") != paper
    assert digest(tmp_path / "fewshot", "--fewshot") != paper
    out = tmp_path / "lf"
    assert cli("export", tmp_path / "paper", "--format", "llamafactory", "--out", out) == 0
    assert f"| prompt sha256 | `{paper}` |" in (out / "README.md").read_text()


# -- errors: one line, exit 2 ------------------------------------------------------------------


def test_data_must_name_its_format(generated: Path, tmp_path: Path, capsys) -> None:
    rc = cli("export", generated, "--out", tmp_path / "x")
    one_line_error(capsys, rc, f"{generated}: is data; give --format llamafactory, trl or hf")
    rc = cli("export", generated, "--format", "hf")
    one_line_error(capsys, rc, "give --out DIR")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    rc = cli("export", generated, "--format", "hf", "--out", tmp_path / "full")
    one_line_error(capsys, rc, "full: exists and is not empty")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    rc = cli("export", tmp_path, "--format", "trl", "--out", tmp_path / "y")
    one_line_error(capsys, rc, "no llava_pose_all.json here")
    rc = cli("export", generated, "--format", "hf", "--name", "../up", "--out", tmp_path / "y")
    one_line_error(capsys, rc, "--name '../up': use letters")
    rc = cli("export", generated, "--format", "hf", "--dtype", "bf16", "--out", tmp_path / "y")
    one_line_error(capsys, rc, "--dtype: only for --format merged")
    rc = cli("export", generated, "--format", "hf", "--verify", tmp_path, "--out", tmp_path / "y")
    one_line_error(capsys, rc, "summary.json: not found")
    rc = cli(
        "export", tmp_path, "--format", "merged", "--verify", tmp_path, "--out", tmp_path / "y"
    )
    one_line_error(capsys, rc, "--verify: only for the dataset formats")
    assert not (tmp_path / "y").exists() and not (tmp_path / "x").exists()


def test_bad_records_stop_the_export_or_are_left_out(
    generated: Path, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    records = json.loads((generated / "llava_pose_all.json").read_text())
    lost = {**records[0], "id": "lost", "image": "val2017/000000000000.jpg"}
    twice = {**records[1], "id": "twice"}
    twice["conversations"] = [*twice["conversations"], {"from": "human", "value": "<image>"}]
    data = tmp_path / "data.json"
    data.write_text(json.dumps([*records, lost, twice]))
    args = ("export", data, "--format", "llamafactory", "--image-root", coco_mini)
    rc = cli(*args, "--out", tmp_path / "out")
    line = one_line_error(capsys, rc, f"{data}: 2 of {len(records) + 2} records are bad")
    assert "--skip-bad" in line and "'lost'" in line
    assert not (tmp_path / "out").exists()

    assert cli(*args, "--skip-bad", "--out", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(records)} records" in printed and "left out 2 bad records" in printed
    kept = json.loads((tmp_path / "out" / "llava_pose.json").read_text())
    assert [r["id"] for r in kept] == [r["id"] for r in records]
    assert "| left out by export `--skip-bad` | 2 |" in (tmp_path / "out" / "README.md").read_text()
    assert "No `stats.json` beside `data.json`" in (tmp_path / "out" / "README.md").read_text()


def test_an_image_outside_the_root_is_refused(tmp_path: Path, coco_mini: Path, capsys) -> None:
    data = tmp_path / "data.json"
    record = {"id": "x", "image": "../../etc/passwd", "conversations": [
        {"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "Hello."}]}  # fmt: skip
    data.write_text(json.dumps([record]))
    args = ("export", data, "--format", "hf", "--image-root", coco_mini, "--out", tmp_path / "o")
    one_line_error(capsys, cli(*args), str(data), "[0].image")
    assert not (tmp_path / "o").exists()


NO_DATASETS = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "datasets":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Blocker())
from llava_pose.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_datasets_the_copies_name_the_install(generated: Path, tmp_path: Path) -> None:
    """The hf and trl copies need `datasets` (one line says how to get it); the llamafactory
    files do not."""

    def run(fmt: str) -> subprocess.CompletedProcess[str]:
        args = ["export", str(generated), "--format", fmt, "--out", str(tmp_path / fmt)]
        return subprocess.run(
            [sys.executable, "-c", NO_DATASETS, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )

    done = run("trl")
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert "needs the `datasets` package: pip install datasets" in err
    assert not (tmp_path / "trl").exists()
    assert run("llamafactory").returncode == 0
    assert (tmp_path / "llamafactory" / "dataset_info.json").is_file()
