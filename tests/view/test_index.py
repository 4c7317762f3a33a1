"""The index builder on real outputs of `generate`, `verify`, `bench` and `poseqa` (COCO-MINI):
what each page and row holds, and the shards the page reads back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.view.conftest import MARKUP, cli, read_jsonl
from tests.view.helpers import built, shard, site

from llava_pose.coco import load_split
from llava_pose.skeleton import person_labels
from llava_pose.view.site import (
    _ALPHABET,
    PAGE_SIZE,
    PAGES_PER_BUCKET,
    ROWS_PER_SHARD,
    TEXT_PER_SHARD,
    bucket_of,
)


def test_every_record_is_a_row_and_every_image_a_page_with_its_people(
    rules_out: Path, coco_mini: Path
) -> None:
    data, root = built(rules_out)
    records = json.loads((rules_out / "llava_pose_all.json").read_text())
    assert [r.id for r in data.rows] == [r["id"] for r in records]  # file order, by image id
    assert root == coco_mini  # from stats.json's source: the root generate read
    contexts = {c.image: c for c in load_split(coco_mini, "val2017", human_only=False)}
    assert set(data.pages) == {r["image"] for r in records} and len(data.pages) == 14
    for key, page in data.pages.items():
        ctx = contexts[key]
        assert (page["w"], page["h"], page["captions"]) == (
            ctx.width,
            ctx.height,
            list(ctx.captions),
        )
        assert [p["label"] for p in page["persons"]] == person_labels(ctx)
        assert [p["kp"] for p in page["persons"]] == [p.keypoints for p in ctx.persons]
        assert [it["task"] for it in page["items"]] == ["conversation", "detail", "reasoning"]
    row = data.rows[0]
    page = data.pages[row.key]
    assert page["items"][row.item]["id"] == row.id == "34417-conv"
    assert row.facets["task"] == ["conversation"] and row.facets["filter"] == ["kept"]
    records = {r["id"]: r for r in json.loads((rules_out / "llava_pose_all.json").read_text())}
    question = records[row.id]["conversations"][0]["value"].replace("<image>", "").strip()
    assert "doughnut" in row.text and row.snippet.startswith(question[:40])


def test_claims_are_marked_at_their_spans_in_their_turns(rules_out: Path) -> None:
    data, _ = built(rules_out)
    lines = {line["id"]: line for line in read_jsonl(rules_out / "claims.jsonl")}
    records = {r["id"]: r for r in json.loads((rules_out / "llava_pose_all.json").read_text())}
    marked = 0
    for row in data.rows:
        item = data.pages[row.key]["items"][row.item]
        for turn in lines[row.id]["turns"]:
            shown = item["turns"][turn["turn"]]
            text = records[row.id]["conversations"][turn["turn"]]["value"]
            assert shown["value"] == text  # a gpt turn is shown as written
            expected = [(c["span"], c["verdict"]) for c in turn["claims"]]
            assert [([m[0], m[1]], m[2]) for m in shown.get("claims", [])] == expected
            marked += len(expected)
        verdicts = {c["verdict"] for t in lines[row.id]["turns"] for c in t["claims"]}
        assert set(row.facets["verdict"]) == (verdicts or {"no claims"})
    found = sum(len(t["claims"]) for line in lines.values() for t in line["turns"])
    assert marked == found > 100  # every claim the pose check found on COCO-MINI val2017


def test_rejected_replies_are_rows_with_their_filter_and_claims(llm_out: Path) -> None:
    data, _ = built(llm_out)
    rejected = read_jsonl(llm_out / "rejected.jsonl")
    by_filter = {r.id + r.facets["filter"][0] for r in data.rows if r.facets["filter"] != ["kept"]}
    assert by_filter == {line["id"] + line["filter"] for line in rejected}
    assert {f.name: f.values for f in data.facets}["filter"] == [
        "kept", "contradicts_pose", "mentions_source",
    ]  # fmt: skip
    [lying] = [r for r in data.rows if r.facets["filter"] == ["contradicts_pose"]]
    item = data.pages[lying.key]["items"][lying.item]
    assert item["status"] == "rejected" and lying.facets["verdict"] == ["contradicted"]
    answer = item["turns"][-1]
    [claim] = [c for c in answer["claims"] if c[2] == "contradicted"]
    assert "lying down" in answer["value"][claim[0] : claim[1]]
    assert ("filter", "contradicts_pose") in lying.badges and (
        "contradicted",
        "1 contradicted",
    ) in lying.badges
    markup = [r for r in data.rows if MARKUP in r.text]
    assert len(markup) == 3 and all(r.facets["filter"] == ["kept"] for r in markup)


def test_claims_of_verify_are_read_with_claims(
    rules_out: Path, coco_mini: Path, tmp_path: Path
) -> None:
    """A dataset checked by `llava-pose verify` afterwards: --claims adds its verdicts."""
    data_file = tmp_path / "data.json"
    records = json.loads((rules_out / "llava_pose_all.json").read_text())
    data_file.write_text(json.dumps(records[:6]))
    coco = ("--coco", coco_mini, "--split", "val2017")
    assert cli("verify", "--data", data_file, *coco, "--out", tmp_path / "v") == 0
    plain, _ = built(data_file, coco=str(coco_mini), split="val2017")
    assert all(r.facets["verdict"] == [] for r in plain.rows)  # nothing checked, no facet
    assert [f.name for f in plain.facets] == ["task", "filter"]
    checked, _ = built(
        data_file,
        coco=str(coco_mini),
        split="val2017",
        claims=[str(tmp_path / "v" / "claims.jsonl")],
    )
    assert sum("supported" in r.facets["verdict"] for r in checked.rows) >= 3
    assert checked.pages[checked.rows[0].key]["persons"]  # keypoints from --coco


def test_shards_hold_every_row_page_and_text(rules_out: Path, tmp_path: Path) -> None:
    data, _, served = site(rules_out, tmp_path / "site")
    folder = tmp_path / "site" / "data"
    name, manifest = shard(folder / "manifest.js")
    assert name == "manifest" and manifest["rows"] == 42 and manifest["pageSize"] == PAGE_SIZE
    assert manifest["buckets"] == math.ceil(14 / PAGES_PER_BUCKET)
    assert {f["name"]: {v["value"]: v["count"] for v in f["values"]} for f in manifest["facets"]}[
        "task"
    ] == {"conversation": 14, "detail": 14, "reasoning": 14}
    rows = [
        r
        for k in range(math.ceil(42 / ROWS_PER_SHARD))
        for r in shard(folder / "rows" / f"{k}.js")[1]
    ]
    assert [r["id"] for r in rows] == [r.id for r in data.rows]
    texts = [
        t
        for k in range(math.ceil(42 / TEXT_PER_SHARD))
        for t in shard(folder / "text" / f"{k}.js")[1]
    ]
    assert texts == [r.text.lower() for r in data.rows]
    for r in rows:
        _, pages = shard(folder / "pages" / f"{bucket_of(r['key'], manifest['buckets'])}.js")
        page = pages[r["key"]]
        assert page["items"][r["item"]]["id"] == r["id"]
        assert page["src"] == "img/" + r["key"] and r["key"] in served
    _, columns = shard(folder / "columns.js")
    width, codes = columns["width"], columns["codes"]
    facets = manifest["facets"]
    for i, row in enumerate(data.rows):
        code = 0
        for ch in codes[i * width : (i + 1) * width]:
            code = code * 64 + _ALPHABET.index(ch)
        masks = columns["combos"][code]
        for f, mask in zip(facets, masks, strict=True):
            values = {v["value"] for k, v in enumerate(f["values"]) if mask >> k & 1}
            assert values == set(row.facets[f["name"]])


def test_bucket_of_is_fnv1a_of_the_utf8_key() -> None:
    assert bucket_of("a", 1 << 32) == 0xE40C292C  # the published FNV-1a 32 test vector
    assert bucket_of("foobar", 1 << 32) == 0xBF9CF968
    assert bucket_of("é", 1 << 32) != bucket_of("e", 1 << 32)


def test_ehpaub_pages_hold_answers_and_every_judges_scores(ehpaub: dict[str, Path]) -> None:
    data, root = built(ehpaub["bench"], reviews=[str(ehpaub["reviews"])])  # answers from reviews
    questions = read_jsonl(ehpaub["bench"] / "questions.jsonl")
    assert [r.id for r in data.rows] == [str(q["question_id"]) for q in questions]
    manifest = json.loads((ehpaub["bench"] / "manifest.json").read_text())
    assert root == Path(manifest["image_root"])
    item = data.pages[data.rows[0].key]["items"][data.rows[0].item]
    assert item["question"] == questions[0]["text"] and item["reference"]
    by_model = {a["model"]: a for a in item["answers"]}
    assert set(by_model) == {"weak", "strong"}
    assert by_model["weak"]["text"] == f"WEAK {MARKUP}"
    [review] = by_model["weak"]["reviews"]
    assert review["scores"] == [8.0, 5.0] and review["content"].startswith("8 5\n")
    assert {name for name, _ in data.sorts} == {"gap:any", "gap:0:weak", "gap:0:strong"}
    assert all(
        r.sort == {"gap:any": 3.0, "gap:0:weak": 3.0, "gap:0:strong": 1.0} for r in data.rows
    )
    assert ("weak (relative)" not in dict(data.summary)) and dict(data.summary)["weak"].startswith(
        "62.5%"
    )


def test_poseqa_pages_mark_each_answer_right_or_wrong(poseqa: dict[str, Path]) -> None:
    data, _ = built(poseqa["bench"], answers=[str(poseqa["answers"])])
    questions = read_jsonl(poseqa["bench"] / "questions.jsonl")
    assert len(data.rows) == len(questions)
    for row, q in zip(data.rows, questions, strict=True):
        item = data.pages[row.key]["items"][row.item]
        marks = {a["model"]: a["correct"] for a in item["answers"]}
        assert marks == {"contrarian": False, "oracle": True}
        assert item["persons"] == q["persons"] and row.facets["model:oracle"] == ["right"]
        assert row.facets["model:contrarian"] in (["wrong"], ["unreadable"])
    assert dict(data.summary)["oracle"] == f"{len(questions)}/{len(questions)} right"


@pytest.mark.parametrize("kind", ["ehpaub", "poseqa"])
def test_benchmarks_take_answers_of_their_own_questions_only(
    kind: str, ehpaub: dict[str, Path], poseqa: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Answers of the other benchmark: one line naming the answers file."""
    from tests.conftest import one_line_error

    bench, other = (ehpaub, poseqa) if kind == "ehpaub" else (poseqa, ehpaub)
    rc = cli("view", bench["bench"], "--answers", other["answers"], "--export", "/nonexistent/x")
    one_line_error(capsys, rc, "question_id", str(other["answers"]))
