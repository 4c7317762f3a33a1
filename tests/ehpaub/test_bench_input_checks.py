"""The benchmark's files are data, not trusted: an image path that leaves the image root, or a
number that is NaN, is one line naming the file, the line and the field, exit 2, no request sent
(the loopback server records every request) and no output written; an image too long for the
teacher's context window is not drawn. Real CLI, real COCO-MINI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest
from tests.conftest import find_coco_mini
from tests.ehpaub.helpers import model_answers, read_jsonl, write_jsonl
from tests.test_paths import ESCAPES

from llava_pose.cli import main
from llava_pose.coco import select_images, write_contexts
from llava_pose.ehpaub.build import qualifies


def answer(bench: Path, out: Path, server, *extra: str) -> int:
    return main(
        ["-q", "bench", "answer", "--bench", str(bench), "--out", str(out),
         "--base-url", server.url, "--model", "openai:gpt-4o-mini",
         "--image-root", str(find_coco_mini()), *extra]
    )  # fmt: skip


def one_line_error(capsys: pytest.CaptureFixture[str], rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llava-pose: error: "), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def rewrite(path: Path, index: int, **fields: object) -> int:
    """Change fields of the `index`-th line of a JSONL file; its 1-based line number."""
    rows = read_jsonl(path)
    rows[index].update(fields)
    write_jsonl(path, rows)
    return index + 1


@pytest.mark.parametrize("image", ESCAPES)
def test_answer_never_reads_an_image_outside_the_root(
    openai_server, small_bench: Path, tmp_path: Path, capsys, image: str
) -> None:
    line = rewrite(small_bench / "questions.jsonl", 4, image=image)
    out = tmp_path / "answers" / "a.jsonl"
    rc = answer(small_bench, out, openai_server)
    one_line_error(capsys, rc, f"questions.jsonl: line {line}: image: ")
    assert openai_server.requests == []
    assert not out.parent.exists()


def test_a_linked_image_folder_works_and_cannot_be_climbed_out_of(
    openai_server, small_bench: Path, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    """ROOT/val2017 linked to another disk (the user's choice) is read through. `val2017/../x`
    looks inside the root; the OS would resolve it beside the link's target, so it is folded
    to ROOT/x first: a secret there is never read, and nothing is sent."""
    disk = tmp_path / "disk"
    shutil.copytree(coco_mini / "val2017", disk / "val2017")
    (disk / "secret.jpg").write_bytes(next((disk / "val2017").glob("*.jpg")).read_bytes())
    root = tmp_path / "coco"
    root.mkdir()
    (root / "val2017").symlink_to(disk / "val2017")
    assert (root / "val2017" / ".." / "secret.jpg").is_file()  # as the OS sees it

    out = tmp_path / "a.jsonl"
    assert answer(small_bench, out, openai_server, "--image-root", str(root)) == 0
    assert len(openai_server.requests) == 6 and len(read_jsonl(out)) == 6

    openai_server.reset()
    rewrite(small_bench / "questions.jsonl", 0, image="val2017/../secret.jpg")
    out = tmp_path / "b.jsonl"
    rc = answer(small_bench, out, openai_server, "--image-root", str(root))
    one_line_error(
        capsys, rc, "questions.jsonl: question_id 0: image: ", f"not found: {root / 'secret.jpg'}"
    )
    assert openai_server.requests == [] and not out.exists()


def test_judge_refuses_an_escaping_image_in_the_context_file(
    openai_server, small_bench: Path, tmp_path: Path, capsys
) -> None:
    answers = model_answers(tmp_path / "m.jsonl", small_bench, "good")
    line = rewrite(small_bench / "context.jsonl", 1, image="../../etc/passwd")
    out = tmp_path / "reviews"
    rc = main(
        ["-q", "bench", "judge", "--bench", str(small_bench), "--answers", str(answers),
         "--out", str(out), "--base-url", openai_server.url]
    )  # fmt: skip
    one_line_error(capsys, rc, f"context.jsonl: line {line}: image: ", "climbs out")
    assert openai_server.requests == [] and not out.exists()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("bbox", float("nan"), "instances[0].bbox[1]"),
        ("keypoints", float("inf"), "instances[{p}].keypoints[3][0]"),
        ("width", 10**30, "width"),
    ],
)
def test_judge_names_the_field_of_an_absurd_number_in_the_context_file(
    openai_server, small_bench: Path, tmp_path: Path, capsys, field: str, value, named: str
) -> None:
    path = small_bench / "context.jsonl"
    rows = read_jsonl(path)
    person = next(i for i, inst in enumerate(rows[0]["instances"]) if "keypoints" in inst)
    if field == "bbox":
        rows[0]["instances"][0]["bbox"][1] = value
    elif field == "keypoints":
        rows[0]["instances"][person]["keypoints"][3][0] = value
    else:
        rows[0][field] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json writes NaN, Infinity
    answers = model_answers(tmp_path / "m.jsonl", small_bench, "good")
    rc = main(
        ["-q", "bench", "judge", "--bench", str(small_bench), "--answers", str(answers),
         "--out", str(tmp_path / "reviews"), "--base-url", openai_server.url]
    )  # fmt: skip
    one_line_error(capsys, rc, f"context.jsonl: line 1: {named.format(p=person)}: ")
    assert openai_server.requests == []


def test_build_does_not_draw_an_image_too_long_for_the_teacher(
    openai_server, val_contexts: list, tmp_path: Path, capsys
) -> None:
    """The first image of the seeded order gets 10,000 captions: its prompts pass gpt-4o's
    128k window, so it is never asked about and the next image takes its place."""
    eligible = [c for c in val_contexts if qualifies(c, 10, 1, 0.05)]
    victim = select_images(eligible, len(eligible), 0)[0]
    mark = "ZEBRA-CROSSING-MARK"
    big = msgspec.structs.replace(
        victim, captions=victim.captions + tuple(f"{mark} {i}" for i in range(10_000))
    )
    path = tmp_path / "contexts.jsonl"
    write_contexts(path, [big if c is victim else c for c in val_contexts])
    out = tmp_path / "perf"
    rc = main(
        ["-q", "bench", "build", "--contexts", str(path), "--split", "val2017", "--images", "2",
         "--out", str(out), "--teacher", "openai:gpt-4o", "--base-url", openai_server.url]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert openai_server.requests and not any(
        mark in json.dumps(r.body) for r in openai_server.requests
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"]["too_long_for_context_window"] == {
        "tokens": 128_000,
        "skipped_requests": 3,
        "skipped_images": [victim.image_id],
    }
    assert victim.image not in {q["image"] for q in read_jsonl(out / "questions.jsonl")}
    assert manifest["images"] == 2
