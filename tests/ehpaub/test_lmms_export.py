"""`llava-pose bench export`: E-HPAUB and PoseQA as lmms-eval task folders, loaded by lmms-eval's
own TaskManager and scored through the exported functions (real COCO-MINI images; the E-HPAUB
judge is a loopback OpenAI server reached through lmms-eval's judge provider)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.conftest import cli, find_coco_mini, one_line_error
from tests.ehpaub.helpers import KEY, read_jsonl, write_jsonl
from tests.servers import OpenAIServer

from llava_pose.ehpaub.files import load_bench, qid_key
from llava_pose.ehpaub.judge import judge_system, load_rules, review_content
from llava_pose.lmms_export import (
    RUNTIME_IMPORTS,
    detect_benchmark,
    metric_list,
    render_yaml,
    standalone_source,
)


def export_benches(root: Path, coco_mini: Path) -> dict[str, Path]:
    """A real E-HPAUB (offline teacher, 2 images) and a real PoseQA, both of COCO-MINI val2017,
    exported side by side into one lmms_tasks/ folder."""
    ehpaub, poseqa, out = root / "ehpaub", root / "poseqa", root / "lmms_tasks"
    coco = ("--coco", coco_mini, "--split", "val2017")
    assert cli("bench", "build", *coco, "--images", 2, "--teacher", "rules", "--out", ehpaub) == 0
    assert cli("poseqa", "build", *coco, "--out", poseqa) == 0
    images = ("--image-root", coco_mini)
    assert (
        cli("bench", "export", "--bench", ehpaub, "--format", "lmms-eval", "--out", out, *images)
        == 0
    )
    assert cli("bench", "export", "--bench", poseqa, "--out", out, *images) == 0
    return {"ehpaub": ehpaub, "poseqa": poseqa, "out": out}


@pytest.fixture(scope="module")
def benches(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> dict[str, Path]:
    return export_benches(tmp_path_factory.mktemp("export"), coco_mini)


@pytest.fixture(scope="module")
def tasks(benches: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """lmms-eval's TaskManager on the exported folder (its own tasks left out: 30 s to index)."""
    pytest.importorskip("lmms_eval")  # CI installs it (.ci/run); a guard for bare checkouts
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        from lmms_eval.tasks import TaskManager, get_task_dict

        manager = TaskManager(include_path=str(benches["out"]), include_defaults=False)
        yield get_task_dict(["ehpaub", "poseqa"], manager)


def aggregate(task: Any, per_doc: list[dict[str, Any]]) -> dict[str, Any]:
    """What lmms-eval's evaluator does with process_results: items per metric, then each
    metric's aggregation function."""
    items: dict[str, list[Any]] = defaultdict(list)
    for metrics in per_doc:
        for name, value in metrics.items():
            items[name].append(value)
    functions = task.aggregation()
    return {name: functions[name](values) for name, values in items.items()}


def check_visual(task: Any, doc: dict[str, Any], coco_mini: Path) -> None:
    (image,) = task.doc_to_visual(doc)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    with Image.open(coco_mini / doc["image"]) as real:
        assert image.size == real.size
        assert image.tobytes() == real.convert("RGB").tobytes()


# -- PoseQA: exact match -------------------------------------------------------------------------


def right_reply(doc: dict[str, Any]) -> str:
    """The correct answer, worded the way models word it."""
    if doc["answer_type"] == "yes/no":
        return f"{doc['answer'].capitalize()}, that is what the picture shows."
    if doc["answer_type"] == "choice":
        k = ord(doc["answer"]) - ord("A")
        return f"{doc['answer']}) {doc['choices'][k]}"
    return f"{doc['answer']} people."


def wrong_reply(doc: dict[str, Any]) -> str:
    if doc["answer_type"] == "yes/no":
        return "no" if doc["answer"] == "yes" else "yes"
    if doc["answer_type"] == "choice":
        return "(A)" if doc["answer"] != "A" else "(B)"
    return str(int(doc["answer"]) + 1)


@pytest.mark.lmms
@pytest.mark.slow
def test_poseqa_task_loads_and_scores_exact_match(
    tasks: Any, benches: dict[str, Path], coco_mini: Path
) -> None:
    task = tasks["poseqa"]
    docs = list(task.test_docs())
    questions = read_jsonl(benches["poseqa"] / "questions.jsonl")
    assert [d["question_id"] for d in docs] == [qid_key(q["question_id"]) for q in questions]
    for doc, q in zip(docs, questions, strict=True):
        assert task.doc_to_text(doc) == q["text"]
        assert task.doc_to_target(doc) == q["answer"]
    for doc in docs[:3]:
        check_visual(task, doc, coco_mini)
    families = {q["category"] for q in questions}
    expected = {"exact_match_all", "unparsed", *(f"exact_match_{f}" for f in families)}
    assert set(task.aggregation()) == expected
    assert task.higher_is_better()["unparsed"] is False

    right = aggregate(task, [task.process_results(d, [right_reply(d)]) for d in docs])
    assert right == dict.fromkeys(expected, 1.0) | {"unparsed": 0.0}

    # every other question wrong: the accuracy is the share of the rest, family by family
    mixed_replies = [right_reply(d) if i % 2 else wrong_reply(d) for i, d in enumerate(docs)]
    mixed = aggregate(
        task, [task.process_results(d, [r]) for d, r in zip(docs, mixed_replies, strict=True)]
    )
    assert mixed["exact_match_all"] == sum(i % 2 for i in range(len(docs))) / len(docs)
    for family in families:
        mine = [i for i, d in enumerate(docs) if d["category"] == family]
        assert mixed[f"exact_match_{family}"] == sum(i % 2 for i in mine) / len(mine)
    assert mixed["unparsed"] == 0.0

    unreadable = aggregate(task, [task.process_results(d, ["I cannot tell."]) for d in docs])
    assert unreadable["exact_match_all"] == 0.0 and unreadable["unparsed"] == 1.0


# -- E-HPAUB: LLM judge -------------------------------------------------------------------------


def fresh_judge(task: Any) -> dict[str, Any]:
    """The exported utils.py as lmms-eval loaded it, with its judge made afresh: one run keeps
    one judge (its provider, and what its calls said), and each test here is a run."""
    module = task.config.process_results.__globals__
    module["_judge"] = module["_Judge"]()
    return module


@pytest.fixture
def judge_server(tasks: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """The loopback judge, where lmms-eval's OpenAI provider looks (OPENAI_API_URL): 8 for the
    reference and 6 for the model, or an unreadable review for answers marked UNREADABLE."""

    def respond(body: dict[str, Any]) -> str:
        if "UNREADABLE" in body["messages"][-1]["content"]:
            return "Both answers are fine."
        return "8 6\nAssistant 2 misses the keypoints."

    with OpenAIServer(latency=0.0, responder=respond, api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_API_URL", server.url)
        monkeypatch.setenv("API_TYPE", "openai")
        monkeypatch.delenv("MODEL_VERSION", raising=False)
        fresh_judge(tasks["ehpaub"])
        yield server


@pytest.mark.lmms
@pytest.mark.slow
def test_ehpaub_task_judges_like_bench_judge(
    tasks: Any, benches: dict[str, Path], coco_mini: Path, judge_server: OpenAIServer
) -> None:
    task = tasks["ehpaub"]
    docs = list(task.test_docs())
    bench = load_bench(benches["ehpaub"])
    assert [d["question_id"] for d in docs] == [qid_key(q.question_id) for q in bench.questions]
    for doc, q in zip(docs, bench.questions, strict=True):
        assert task.doc_to_text(doc) == q.text
        assert task.doc_to_target(doc) == bench.reference[qid_key(q.question_id)].text
    for doc in docs[:2]:
        check_visual(task, doc, coco_mini)

    answers = [f"Model answer {i}." for i in range(len(docs))]
    scored = aggregate(
        task, [task.process_results(d, [a]) for d, a in zip(docs, answers, strict=True)]
    )
    categories = bench.categories()
    assert scored == {
        "relative_all": 75.0,
        **{f"relative_{c}": 75.0 for c in categories},
        "unscored": 0.0,
    }
    # The judge got exactly what `llava-pose bench judge` sends: its system message, and the
    # review laid out by its own review_content, with its rules.
    _, rules = load_rules("auto", bench.contexts)
    bodies = [r.body for r in judge_server.requests]
    assert len(bodies) == len(docs)
    for body, q, answer in zip(bodies, bench.questions, answers, strict=True):
        assert body["model"] == "gpt-4o"
        reference = bench.reference[qid_key(q.question_id)].text
        ctx = bench.contexts[q.image]
        assert body["messages"] == [
            {"role": "system", "content": judge_system()},
            {
                "role": "user",
                "content": review_content(ctx, q.text, reference, answer, rules[q.category]),
            },
        ]
        assert body["temperature"] == 0.2

    # An unreadable review is asked again, as `bench judge --max-attempts 3` does, then leaves
    # its question out of the averages, and says so.
    answers[0] = "UNREADABLE"
    asked = len(judge_server.requests)
    per_doc = [task.process_results(d, [a]) for d, a in zip(docs, answers, strict=True)]
    assert len(judge_server.requests) - asked == len(docs) + 2
    assert per_doc[0]["relative_all"]["scores"] is None
    assert "no two scores" in per_doc[0]["relative_all"]["problem"]
    assert "(asked 3 times)" in per_doc[0]["relative_all"]["problem"]
    assert [f["attempt"] for f in per_doc[0]["relative_all"]["failures"]] == [0, 1, 2]
    partly = aggregate(task, per_doc)
    assert partly["unscored"] == 1 / len(docs)
    assert partly["relative_all"] == 75.0


@pytest.mark.lmms
@pytest.mark.slow
def test_ehpaub_judge_rejecting_the_key_stops_the_run(
    tasks: Any, judge_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge that cannot be used stops lmms-eval with one message (a SystemExit: lmms-eval
    retries and then swallows an Exception) instead of leaving every question unscored."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-WRONG-000000")
    task = tasks["ehpaub"]
    docs = list(task.test_docs())
    for doc in docs[:2]:  # the second asks nobody: the run is over
        with pytest.raises(SystemExit, match=r"API key was rejected \(401\).*stopping the run"):
            task.process_results(doc, ["Model answer."])
    assert len(judge_server.requests) == 1


@pytest.mark.lmms
@pytest.mark.slow
def test_ehpaub_judge_without_a_key_stops_the_run(
    tasks: Any, judge_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    task = tasks["ehpaub"]
    with pytest.raises(SystemExit, match=r"openai judge has no API key .*OPENAI_API_KEY"):
        task.process_results(next(iter(task.test_docs())), ["Model answer."])
    assert judge_server.requests == []


@pytest.mark.lmms
@pytest.mark.slow
def test_ehpaub_judge_failing_one_call_loses_only_its_question(
    tasks: Any, judge_server: OpenAIServer
) -> None:
    judge_server.add_fault("server_error", times=3)  # the provider's client tries 3 times
    task = tasks["ehpaub"]
    first, second = list(task.test_docs())[:2]
    lost = task.process_results(first, ["Model answer."])["relative_all"]
    assert lost["scores"] is None and "judge call failed" in lost["problem"]
    assert task.process_results(second, ["Model answer."])["relative_all"]["scores"] == [8, 6]
    assert len(judge_server.requests) == 4


@pytest.mark.lmms
@pytest.mark.slow
def test_ehpaub_judge_gone_for_good_stops_the_run(tasks: Any, judge_server: OpenAIServer) -> None:
    """After the judge has answered, a failure to connect may be a blip: the question is lost;
    CONNECT_FAILURES of them in a row and the server is gone: the run stops."""
    task = tasks["ehpaub"]
    module = fresh_judge(task)
    docs = list(task.test_docs())
    assert task.process_results(docs[0], ["Model answer."])["relative_all"]["scores"] == [8, 6]
    judge_server.stop()
    for doc in docs[1 : module["CONNECT_FAILURES"]]:
        lost = task.process_results(doc, ["Model answer."])["relative_all"]
        assert lost["scores"] is None and "judge call failed" in lost["problem"]
    with pytest.raises(SystemExit, match=r"lost http://127\.0\.0\.1:\d+/v1: 3 calls in a row"):
        task.process_results(docs[module["CONNECT_FAILURES"]], ["Model answer."])


# -- the folder itself --------------------------------------------------------------------------


def imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import in an exported module"
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("task", ["ehpaub", "poseqa"])
def test_exported_code_needs_no_llava_pose(benches: dict[str, Path], task: str) -> None:
    folder = benches["out"] / task
    allowed = set(sys.stdlib_module_names) | RUNTIME_IMPORTS
    for py in folder.glob("*.py"):
        assert imports(py.read_text()) <= allowed, py.name
    export = json.loads((folder / "export.json").read_text())
    assert export["image_root"] == str(Path(export["image_root"]).resolve())


def test_judge_max_attempts_is_recorded(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export.json carries the re-asks the exported judge makes (`bench judge`'s default: 3)."""
    export = json.loads((benches["out"] / "ehpaub" / "export.json").read_text())
    assert export["judge"]["max_attempts"] == 3
    args = ("bench", "export", "--bench", benches["ehpaub"], "--image-root", find_coco_mini())
    assert cli(*args, "--judge-max-attempts", 1, "--out", tmp_path / "one") == 0
    export = json.loads((tmp_path / "one" / "ehpaub" / "export.json").read_text())
    assert export["judge"]["max_attempts"] == 1
    rc = cli(*args, "--judge-max-attempts", 0, "--out", tmp_path / "zero")
    one_line_error(capsys, rc, "--judge-max-attempts")
    assert not (tmp_path / "zero").exists()


def test_poseqa_utils_scores_with_llava_pose_unimportable(benches: dict[str, Path]) -> None:
    """The exported utils.py loads and scores in a Python where `import llava_pose` fails."""
    folder = benches["out"] / "poseqa"
    doc = read_jsonl(folder / "docs.jsonl")[0]
    script = (
        "import importlib.util, json, sys\n"
        "sys.modules['llava_pose'] = None\n"
        f"spec = importlib.util.spec_from_file_location('utils', {str(folder / 'utils.py')!r})\n"
        "utils = importlib.util.module_from_spec(spec); spec.loader.exec_module(utils)\n"
        f"doc = json.loads({json.dumps(doc)!r})\n"
        "print(json.dumps(utils.process_results(doc, [doc['answer']])['exact_match_all']))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    item = json.loads(run.stdout)
    assert item["score"] == 1.0 and item["parsed"] == doc["answer"]


def test_export_again_replaces_the_folder(benches: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "tasks"
    args = ("bench", "export", "--bench", benches["poseqa"], "--image-root", find_coco_mini())
    assert cli(*args, "--out", out) == 0
    (out / "poseqa" / "stale.txt").write_text("from an earlier export")
    assert cli(*args, "--out", out, "--task", "pq") == 0
    assert cli(*args, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == [".llava-pose.lock", "poseqa", "pq"]
    assert not (out / "poseqa" / "stale.txt").exists()
    assert '"pq"' in (out / "pq" / "pq.yaml").read_text()


# -- bad input: one line, exit 2, nothing written ----------------------------------------------


# An edited copy of the benchmark, read as the user would have to: the field checks then speak.
EDITED = ("--allow-modified", "--image-root", find_coco_mini())


def copy_poseqa(benches: dict[str, Path], dst: Path, edit: Callable[[dict], None]) -> Path:
    rows = read_jsonl(benches["poseqa"] / "questions.jsonl")
    edit(rows[1])
    write_jsonl(dst / "questions.jsonl", rows)
    (dst / "manifest.json").write_text((benches["poseqa"] / "manifest.json").read_text())
    return dst


def test_missing_image_is_one_line_naming_the_question(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = copy_poseqa(benches, tmp_path / "pq", lambda r: r.update(image="val2017/nope.jpg"))
    qid = read_jsonl(bench / "questions.jsonl")[1]["question_id"]
    rc = cli("bench", "export", "--bench", bench, "--out", tmp_path / "out", *EDITED)
    one_line_error(capsys, rc, "questions.jsonl", f"question_id {qid!r}: image", "nope.jpg")
    assert not (tmp_path / "out" / "poseqa").exists()


def test_escaping_image_is_refused(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = copy_poseqa(benches, tmp_path / "pq", lambda r: r.update(image="../../etc/passwd"))
    rc = cli("bench", "export", "--bench", bench, "--out", tmp_path / "out", *EDITED)
    one_line_error(capsys, rc, "questions.jsonl", ": image", "outside")


def test_bad_answer_type_names_the_field(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = copy_poseqa(benches, tmp_path / "pq", lambda r: r.update(answer_type="essay"))
    rc = cli("bench", "export", "--bench", bench, "--out", tmp_path / "out", *EDITED)
    one_line_error(capsys, rc, "questions.jsonl", ": answer_type", "'essay'")


@pytest.mark.parametrize("category", ["all", "arm raised"])
def test_category_that_cannot_name_a_metric(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], category: str
) -> None:
    bench = copy_poseqa(benches, tmp_path / "pq", lambda r: r.update(category=category))
    rc = cli("bench", "export", "--bench", bench, "--out", tmp_path / "out", *EDITED)
    one_line_error(capsys, rc, "questions.jsonl", f"category {category!r} cannot name a metric")


def test_bad_options(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli("bench", "export", "--bench", benches["poseqa"], "--task", "a/b", "--out", tmp_path)
    one_line_error(capsys, rc, "--task", "'a/b'")
    rc = cli("bench", "export", "--bench", tmp_path / "none", "--out", tmp_path)
    one_line_error(capsys, rc, "none", "benchmark folder not found")
    with pytest.raises(SystemExit) as exit_:  # argparse's own choices check
        cli("bench", "export", "--bench", benches["poseqa"], "--format", "csv", "--out", tmp_path)
    assert exit_.value.code == 2 and "--format: invalid choice: 'csv'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# -- pure ---------------------------------------------------------------------------------------


def test_detect_benchmark() -> None:
    assert detect_benchmark({"benchmark": "E-HPAUB"}, False, {"answer": "yes"}) == "ehpaub"
    assert detect_benchmark({"benchmark": "PoseQA"}, True, None) == "poseqa"
    assert detect_benchmark({}, True, {"answer": "yes"}) == "ehpaub"
    assert detect_benchmark({}, False, {"question_id": 1, "answer": "B"}) == "poseqa"
    assert detect_benchmark({}, False, {"question_id": 1, "text": "?"}) == "ehpaub"


def test_render_yaml_fills_the_template() -> None:
    metrics = [("exact_match_all", "aggregate_mean", True), ("unparsed", "aggregate_mean", False)]
    assert metric_list(metrics) == (
        "  - metric: exact_match_all\n"
        "    aggregation: !function utils.aggregate_mean\n"
        "    higher_is_better: true\n"
        "  - metric: unparsed\n"
        "    aggregation: !function utils.aggregate_mean\n"
        "    higher_is_better: false"
    )
    template = "task: __TASK__\ndataset_kwargs: __DATASET_KWARGS__\nmetric_list:\n__METRIC_LIST__\n"
    assert render_yaml(template, "pq", metrics[:1]) == (
        'task: "pq"\n'
        'dataset_kwargs: {"data_files": {"test": "docs.jsonl"}}\n'
        "metric_list:\n"
        "  - metric: exact_match_all\n"
        "    aggregation: !function utils.aggregate_mean\n"
        "    higher_is_better: true\n"
    )


def test_standalone_source_refuses_what_needs_more_than_the_stdlib() -> None:
    assert "def parse_scores" in standalone_source("llava_pose.ehpaub.scores")
    assert "def parse_answer" in standalone_source("llava_pose.poseqa.answers")
    with pytest.raises(ValueError, match="imports msgspec"):
        standalone_source("llava_pose.ehpaub.files")
    with pytest.raises(ValueError, match="relatively"):
        standalone_source("llava_pose.cli.bench")
