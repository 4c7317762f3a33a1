"""`--teacher-image`: the teacher sees the picture with the paper's text (issue 19 §3).

Through the real CLI against the loopback OpenAI and Anthropic servers, on COCO-MINI: the image
arrives as an image part of the query's first user message, with the text; the system prompt
says so; with the switch off nothing changes; the estimate, `--max-cost`, the context window,
`--batch` and the pose filter count and treat it as the providers do."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from PIL import Image
from tests.conftest import KEY, cli, find_coco_mini, generate_args, one_line_error
from tests.ehpaub.replies import teacher_reply
from tests.servers import AnthropicServer, OpenAIServer
from tests.servers.vision import anthropic_image_tokens, openai_image_tokens

from llava_pose.coco import read_split
from llava_pose.errors import EXIT_BUDGET, EXIT_OK, EXIT_PENDING
from llava_pose.generate import GenerateConfig, build_requests, teacher_images
from llava_pose.llm.anthropic_api import AnthropicBackend
from llava_pose.llm.cache import request_key
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.prompts import image_system_note, load_prompts
from llava_pose.records import ImageContext
from llava_pose.tasks import TASKS, task_type

OPENAI = "openai:gpt-4o"
ANTHROPIC = "anthropic:claude-sonnet-4-5"
NOTE_MARK = "The image itself is attached"


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIServer(api_key=KEY, responder=teacher_reply) as server:
        yield server


@pytest.fixture
def anthropic_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with AnthropicServer(api_key=KEY, responder=teacher_reply) as server:
        yield server


def gen(
    server: OpenAIServer | AnthropicServer,
    out: Path,
    *extra: object,
    spec: str = OPENAI,
    images: int = 2,
) -> int:
    """`generate` on COCO-MINI val2017 (`images` of them) with `spec` at `server`."""
    args = generate_args(server.url, out, *extra, images=images)
    args[args.index("--teacher") + 1] = spec
    return cli(*args)


def bodies(server: OpenAIServer | AnthropicServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests]


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def val_contexts() -> dict[int, ImageContext]:
    return {c.image_id: c for c in read_split(find_coco_mini(), "val2017").contexts}


# -- what an "on" body is, less its image and its note ----------------------------------------


def strip_note(text: str) -> str:
    for people in (True, False):
        note = "\n\n" + image_system_note(people)
        if text.endswith(note):
            return text[: -len(note)]
    raise AssertionError(f"no --teacher-image note at the end of {text[-80:]!r}")


def without_image(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[int, dict]]]:
    """(`body` as it would be without --teacher-image, [(message index, image part)])."""
    body = copy.deepcopy(body)
    parts: list[tuple[int, dict]] = []
    if "system" in body:  # Anthropic
        system = body["system"]
        if isinstance(system, list):
            system[0]["text"] = strip_note(system[0]["text"])
        else:
            body["system"] = strip_note(system)
        for i, m in enumerate(body["messages"]):
            if isinstance(m["content"], list):
                parts += [(i, b) for b in m["content"] if b["type"] == "image"]
                m["content"] = [b for b in m["content"] if b["type"] != "image"]
        return body, parts
    messages = body["messages"]
    messages[0]["content"] = strip_note(messages[0]["content"])
    for i, m in enumerate(messages):
        if isinstance(m["content"], list):
            parts += [(i, p) for p in m["content"] if p["type"] == "image_url"]
            [text] = [p["text"] for p in m["content"] if p["type"] == "text"]
            m["content"] = text
    return body, parts


def image_bytes(part: dict[str, Any]) -> bytes:
    if part["type"] == "image":
        return base64.b64decode(part["source"]["data"])
    url = part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return base64.b64decode(url.split(",", 1)[1])


def image_of(body: dict[str, Any], contexts: dict[int, ImageContext]) -> ImageContext:
    """The image a body's text is about: the one whose first caption it carries."""
    text = canonical(body)
    [ctx] = [
        c for c in contexts.values() if json.dumps(c.captions[0], ensure_ascii=False)[1:-1] in text
    ]
    return ctx


# -- the requests: only what should change does ------------------------------------------------


BODIES = Path(__file__).parent / "data" / "golden" / "bodies.json"


def test_off_every_body_is_byte_identical_to_before_the_switch() -> None:
    """The OpenAI and Anthropic JSON bodies of every COCO-MINI request (both formats, with and
    without few-shot examples), built as generate builds them, hashed before --teacher-image
    existed (from `generate --dry-run --show`): off, the switch changes no byte."""
    golden = json.loads(BODIES.read_text())
    coco = find_coco_mini()
    backends = {
        "openai": OpenAIBackend("gpt-4o", need_key=False),
        "anthropic": AnthropicBackend("claude-sonnet-4-5", need_key=False),
    }
    seen = 0
    for split in ("train2017", "val2017"):
        contexts = read_split(coco, split).contexts
        for fmt in ("paper", "compact"):
            for fewshot in (False, True):
                cfg = GenerateConfig(coco=str(coco), split=split, format=fmt, fewshot=fewshot)
                for name, backend in backends.items():
                    requests = build_requests(contexts, cfg, backend.model).requests
                    lines = [
                        f"{r.id} "
                        + json.dumps(
                            backend.request_body(r, []),
                            sort_keys=True,
                            separators=(",", ":"),
                            ensure_ascii=False,
                        )
                        for r in requests
                    ]
                    key = f"{split}/{fmt}/{int(fewshot)}/{name}"
                    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
                    assert golden[key] == {"requests": len(lines), "sha256": digest}, key
                    seen += 1
    assert seen == len(golden)


@pytest.mark.parametrize("fmt", ["paper", "compact"])
@pytest.mark.parametrize("fewshot", [False, True])
def test_the_switch_changes_only_the_image_fields_and_the_system_note(fmt, fewshot) -> None:
    """Every COCO-MINI request, built as generate builds it: on, each carries its own image
    file and the system prompt ends with the note; everything else is the off request."""
    coco = find_coco_mini()
    for split in ("train2017", "val2017"):
        contexts = read_split(coco, split).contexts
        off_cfg = GenerateConfig(coco=str(coco), split=split, format=fmt, fewshot=fewshot)
        on_cfg = GenerateConfig(
            coco=str(coco), split=split, format=fmt, fewshot=fewshot, teacher_image=True,
            teacher_image_detail="low", teacher_image_max_side=320,
        )  # fmt: skip
        assert teacher_images(off_cfg, off_cfg, contexts) is None
        off = build_requests(contexts, off_cfg, "gpt-4o").requests
        images = teacher_images(on_cfg, on_cfg, contexts)
        on = build_requests(contexts, on_cfg, "gpt-4o", images=images).requests
        assert len(on) == len(off) == len(contexts) * len(TASKS)
        for a, b in zip(off, on, strict=True):
            assert a.images == () and a.image_detail is None and a.image_max_side is None
            ctx = a.context
            assert ctx is not None
            assert b.images == (str(coco / ctx.image),)
            assert (b.image_detail, b.image_max_side) == ("low", 320)
            system = a.messages[0].content
            note = image_system_note(task_type(a.meta["task"]).shows_people)
            assert b.messages[0].content == f"{system}\n\n{note}"
            assert b.messages[1:] == a.messages[1:]
            same = msgspec.structs.replace(
                b, images=(), image_detail=None, image_max_side=None, messages=a.messages
            )
            assert same == a


def test_the_system_prompts_say_the_teacher_sees_the_image() -> None:
    for fmt in ("paper", "compact"):
        for cues in (False, True):
            plain, seeing = load_prompts(fmt, cues), load_prompts(fmt, cues, image=True)
            assert load_prompts(fmt, cues, image=False) is plain
            for t in TASKS:
                assert NOTE_MARK not in plain.system[t]
                assert seeing.system[t].startswith(plain.system[t])
                added = seeing.system[t][len(plain.system[t]) :]
                assert added.startswith(f"\n\n{NOTE_MARK}")
                # the tasks that show keypoints are told how picture and keypoints share
                assert ("keypoints" in added) == task_type(t).shows_people


@pytest.mark.parametrize("backend", [OpenAIBackend, AnthropicBackend])
def test_with_fewshot_the_image_goes_with_the_query_not_an_example(backend) -> None:
    """The examples are the shared prefix (`ChatRequest.prefix`): the image goes with the
    query's first message after them, so it is never taken for an example's picture."""
    coco = find_coco_mini()
    contexts = read_split(coco, "val2017").contexts[:2]
    cfg = GenerateConfig(coco=str(coco), fewshot=True, teacher_image=True)
    requests = build_requests(contexts, cfg, "m", images=teacher_images(cfg, cfg, contexts))[0]
    name = "claude-sonnet-4-5" if backend is AnthropicBackend else "gpt-4o"
    model = backend(name, need_key=False)
    for request in requests:
        assert request.prefix > 1  # system and examples
        body = model.request_body(request, ["IMAGE"])
        found = [
            (i, k)
            for i, m in enumerate(body["messages"])
            if isinstance(m["content"], list)
            for k, part in enumerate(m["content"])
            if part.get("type") in ("image", "image_url")
        ]
        [(index, k)] = found
        content = body["messages"][index]["content"]
        assert content[k + 1]["text"] == request.messages[request.prefix].content
        if backend is OpenAIBackend:  # one API message per request message
            assert index == request.prefix and k == 0
        else:  # the system prompt is apart; the query follows the last example's answer
            assert body["messages"][index - 1]["role"] == "assistant" and k == 0


# -- through the CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_image_arrives_with_the_text_and_off_is_byte_identical(
    provider, openai_server, anthropic_server, tmp_path
) -> None:
    server, spec = (
        (openai_server, OPENAI) if provider == "openai" else (anthropic_server, ANTHROPIC)
    )
    assert gen(server, tmp_path / "off", spec=spec) == EXIT_OK
    off = sorted(canonical(b) for b in bodies(server))
    server.reset()
    assert gen(server, tmp_path / "on", "--teacher-image", spec=spec) == EXIT_OK
    on = bodies(server)
    assert len(on) == len(off) == 6 and not any("base64" in b for b in off)
    contexts = val_contexts()
    stripped = []
    for body in on:
        plain, parts = without_image(body)
        stripped.append(canonical(plain))
        [(index, part)] = parts  # one image, in the first user message, before its text
        first_user = next(i for i, m in enumerate(body["messages"]) if m["role"] == "user")
        assert index == first_user
        content = body["messages"][index]["content"]
        assert content[0] == part and content[-1]["type"] == "text"
        ctx = image_of(body, contexts)
        assert image_bytes(part) == (find_coco_mini() / ctx.image).read_bytes()
    # with the image and the note taken out, each body is one the switch-off run sent
    assert sorted(stripped) == off
    stats = json.loads((tmp_path / "on" / "stats.json").read_text())
    plain_stats = json.loads((tmp_path / "off" / "stats.json").read_text())
    assert stats["teacher_image"] == {"detail": None, "max_side": None}
    assert plain_stats["teacher_image"] is False
    assert stats["prompt_sha256"] != plain_stats["prompt_sha256"]
    # billed by the documented rule, and the usage check took it: nothing was asked twice
    assert stats["tokens"]["input"] > plain_stats["tokens"]["input"]
    assert stats["requests"]["called"] == 6 and len(on) == 6


def test_detail_and_max_side_are_sent_and_billed(openai_server, tmp_path) -> None:
    assert gen(openai_server, tmp_path / "auto", "--teacher-image", "--tasks", "detail") == 0
    openai_server.reset()
    args = ("--teacher-image", "--teacher-image-detail", "low", "--teacher-image-max-side", 64)
    assert gen(openai_server, tmp_path / "low", *args, "--tasks", "detail") == EXIT_OK
    contexts = val_contexts()
    seen = []
    for body in bodies(openai_server):
        _, [(_, part)] = without_image(body)
        assert part["image_url"]["detail"] == "low"
        ctx = image_of(body, contexts)
        seen.append(ctx)
        with Image.open(io.BytesIO(image_bytes(part))) as im:
            assert max(im.size) == 64 and im.size != (ctx.width, ctx.height)
    # the server bills by the documented rule: the same text, images at low detail (the
    # base 85 tokens of gpt-4o) instead of full tiles
    auto, low = (
        json.loads((tmp_path / arm / "stats.json").read_text())["tokens"]["input"]
        for arm in ("auto", "low")
    )
    tiles = sum(openai_image_tokens("gpt-4o", c.width, c.height) for c in seen)
    low_rule = sum(openai_image_tokens("gpt-4o", 64, 64, "low") for _ in seen)
    assert auto - low == tiles - low_rule > 0


def test_a_rerun_pays_nothing_and_a_changed_image_is_asked_again(openai_server, tmp_path) -> None:
    coco = tmp_path / "coco"
    shutil.copytree(find_coco_mini() / "annotations", coco / "annotations")
    shutil.copytree(find_coco_mini() / "val2017", coco / "val2017")
    out = tmp_path / "out"
    args = ["generate", "--coco", coco, "--split", "val2017", "--max-images", 2, "--out", out,
            "--teacher", OPENAI, "--base-url", openai_server.url, "--teacher-image"]  # fmt: skip
    assert cli(*args) == EXIT_OK
    assert len(openai_server.requests) == 6
    assert cli(*args) == EXIT_OK
    assert len(openai_server.requests) == 6  # all from the cache
    # the root moved: the images are the same bytes, so the replies are still the cache's
    moved = tmp_path / "moved"
    coco.rename(moved)
    args[args.index(coco)] = moved
    assert cli(*args) == EXIT_OK
    assert len(openai_server.requests) == 6
    # one image changed in place (same path): its three requests are asked again
    data = json.loads((out / "llava_pose_all.json").read_text())
    used = sorted({r["image"] for r in data})
    assert len(used) == 2
    target = moved / used[0]
    with Image.open(target) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target, "JPEG")
    assert cli(*args) == EXIT_OK
    assert len(openai_server.requests) == 9
    again = [image_of(r.body, val_contexts()) for r in openai_server.requests[6:]]
    assert {c.image for c in again} == {used[0]}


def test_the_estimate_counts_image_tokens_by_the_providers_rules(tmp_path, capsys) -> None:
    contexts = list(val_contexts().values())
    for spec, rule in (
        ("openai:gpt-4o", lambda c: openai_image_tokens("gpt-4o", c.width, c.height)),
        ("openai:gpt-4o-mini", lambda c: openai_image_tokens("gpt-4o-mini", c.width, c.height)),
        (ANTHROPIC, lambda c: anthropic_image_tokens(c.width, c.height)),
    ):
        base = ["generate", "--coco", find_coco_mini(), "--split", "val2017", "--teacher", spec,
                "--out", tmp_path / "o", "--dry-run"]  # fmt: skip
        assert cli(*base) == EXIT_OK
        plain = capsys.readouterr().out
        assert cli(*base, "--teacher-image") == EXIT_OK
        seen = capsys.readouterr().out
        assert "for images" not in plain
        found = re.search(r"prompt tokens: ([\d,]+), ([\d,]+) of them for images", seen)
        assert found, seen
        total, images = (int(g.replace(",", "")) for g in found.groups())
        assert images == len(TASKS) * sum(rule(c) for c in contexts)
        text = int(re.search(r"prompt tokens: ([\d,]+)", plain)[1].replace(",", ""))
        # the text grows by the note only: a sentence per request
        assert 0 < total - images - text < len(TASKS) * len(contexts) * 100
    assert not (tmp_path / "o").exists()


def test_max_cost_reserves_the_image_tokens(openai_server, tmp_path, capsys) -> None:
    """A ceiling that covers the text-only run stops the run that sends images, because each
    call reserves its image's tokens (gpt-4o-mini: 14,167 for a 640 x 480 photo)."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o-mini: {input: 1.0, output: 0.0}\n")
    common = ("--prices", prices, "--concurrency", 1, "--tasks", "detail")
    spec = "openai:gpt-4o-mini"
    counts = {}
    for arm, extra in (("off", ()), ("on", ("--teacher-image",))):
        assert (
            gen(openai_server, tmp_path / f"dry-{arm}", *common, *extra, "--dry-run", spec=spec)
            == 0
        )
        out = capsys.readouterr().out
        counts[arm] = int(re.search(r"prompt tokens: ([\d,]+)", out)[1].replace(",", ""))
    assert counts["on"] > 4 * counts["off"]
    ceiling = 2 * counts["off"] / 1e6  # USD at $1 a million prompt tokens
    arg = ("--max-cost", f"{ceiling:.6f}")
    assert gen(openai_server, tmp_path / "off", *common, *arg, spec=spec) == EXIT_OK
    called = len(openai_server.requests)
    assert called == 2
    assert gen(openai_server, tmp_path / "on", *common, *arg, "--teacher-image", spec=spec) == (
        EXIT_BUDGET
    )
    assert len(openai_server.requests) - called < 2
    stats = json.loads((tmp_path / "on" / "stats.json").read_text())
    assert stats["requests"]["skipped_budget"] >= 1 and stats["cost_usd"]["this_run"] <= ceiling


def test_the_context_window_counts_the_image(tmp_path, capsys) -> None:
    base = ["generate", "--coco", find_coco_mini(), "--split", "val2017", "--max-images", 2,
            "--teacher", "openai:gpt-4o-mini", "--out", tmp_path / "o", "--dry-run",
            "--context-window", 8000]  # fmt: skip
    assert cli(*base) == EXIT_OK
    assert "skipped" not in capsys.readouterr().out
    assert cli(*base, "--teacher-image") == EXIT_OK  # +14,167 tokens an image: none fits
    assert "skipped: 6 requests of 2 images" in capsys.readouterr().out


def test_batch_sends_the_image_for_both_providers(
    openai_server, anthropic_server, tmp_path
) -> None:
    for server, spec in ((openai_server, OPENAI), (anthropic_server, ANTHROPIC)):
        out = tmp_path / spec.split(":")[0]
        args = ("--teacher-image", "--batch", "--wait", "--poll-interval", "0.01")
        assert gen(server, out, *args, spec=spec) == EXIT_OK
        submitted = [json.loads(key) for key in server.batch_submissions()]
        assert len(submitted) == 6 and server.requests == []
        for body in submitted:
            _, [(_, part)] = without_image(body)
            ctx = image_of(body, val_contexts())
            assert image_bytes(part) == (find_coco_mini() / ctx.image).read_bytes()
        stats = json.loads((out / "stats.json").read_text())
        assert stats["mode"] == "batch" and stats["samples"]["all"] == 6


def test_the_pose_filter_applies_unchanged(openai_server, tmp_path) -> None:
    def lying(body: dict) -> str:  # nobody in COCO-MINI val is lying down: a false statement
        return teacher_reply(body).replace("A person is in the scene", "Everyone is lying down")

    openai_server.responder = lying
    found = {}
    for arm, extra in (("text", ()), ("image", ("--teacher-image",))):
        assert gen(openai_server, tmp_path / arm, *extra, images=3) == EXIT_OK
        found[arm] = json.loads((tmp_path / arm / "stats.json").read_text())
    for stats in found.values():
        assert stats["pose_claims"]["contradicted"] >= 1
        assert stats["filtered"]["contradicts_pose"] == stats["pose_claims"]["contradicted"]
    text, image = found["text"], found["image"]
    assert image["pose_claims"] == text["pose_claims"]
    assert image["filtered"] == text["filtered"] and image["samples"] == text["samples"]


def test_show_with_the_offline_teacher_previews_the_image(tmp_path, capsys) -> None:
    rc = cli("generate", "--coco", find_coco_mini(), "--split", "val2017", "--max-images", 1,
             "--out", tmp_path / "o", "--dry-run", "--show", 1, "--teacher-image",
             "--tasks", "detail")  # fmt: skip
    assert rc == EXIT_OK
    out = capsys.readouterr().out
    assert re.search(r'"url": "<image .*val2017/\d+\.jpg, sent as base64>"', out)
    assert NOTE_MARK in out and "of them for images" in out


def test_bench_build_with_the_image(openai_server, tmp_path) -> None:
    bench = tmp_path / "bench"
    rc = cli("bench", "build", "--coco", find_coco_mini(), "--split", "val2017", "--images", 2,
             "--out", bench, "--teacher", OPENAI, "--base-url", openai_server.url,
             "--teacher-image", "--teacher-image-detail", "high")  # fmt: skip
    assert rc == EXIT_OK
    assert len(openai_server.requests) >= 6
    for body in bodies(openai_server):
        _, [(_, part)] = without_image(body)
        assert part["image_url"]["detail"] == "high"
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["prompts"]["teacher_image"] == {"detail": "high", "max_side": None}


# -- what it cannot mean: one line, exit 2, before any call ------------------------------------


def test_the_offline_teacher_refuses_it(tmp_path, capsys) -> None:
    rc = cli("generate", "--out", tmp_path / "o", "--teacher-image")
    one_line_error(capsys, rc, "--teacher-image", "offline teacher (rules) reads no prompt")
    rc = cli("generate", "--out", tmp_path / "o", "--teacher-image", "--dry-run")
    one_line_error(capsys, rc, "--teacher-image", "--show")
    rc = cli("bench", "build", "--coco", find_coco_mini(), "--teacher", "rules", "--out",
             tmp_path / "b", "--teacher-image")  # fmt: skip
    one_line_error(capsys, rc, "--teacher-image", "rules")


def test_its_settings_need_it_and_a_provider_that_takes_them(
    anthropic_server, tmp_path, capsys
) -> None:
    for flag, value in (("--teacher-image-detail", "low"), ("--teacher-image-max-side", 256)):
        rc = cli("generate", "--out", tmp_path / "o", flag, value)
        one_line_error(capsys, rc, flag, "only with --teacher-image")
    rc = gen(anthropic_server, tmp_path / "o", "--teacher-image", "--teacher-image-detail",
             "low", spec=ANTHROPIC)  # fmt: skip
    one_line_error(capsys, rc, "--teacher-image-detail", "anthropic")
    assert anthropic_server.requests == []


def test_contexts_need_to_say_where_the_images_are(openai_server, tmp_path, capsys) -> None:
    """With --contexts the image files are under --coco (or --images), as `prepare`'s
    contexts say their paths are relative to it; a root without them is one line."""
    contexts = tmp_path / "contexts.jsonl"
    assert cli("prepare", "--coco", find_coco_mini(), "--split", "val2017", "--out",
               contexts) == EXIT_OK  # fmt: skip
    capsys.readouterr()
    base = ["generate", "--contexts", contexts, "--max-images", 1, "--out", tmp_path / "o",
            "--teacher", OPENAI, "--base-url", openai_server.url, "--teacher-image",
            "--tasks", "detail"]  # fmt: skip
    one_line_error(capsys, cli(*base), "--teacher-image", "--contexts", "--coco ROOT")
    (tmp_path / "empty").mkdir()
    rc = cli(*base, "--coco", tmp_path / "empty")
    one_line_error(capsys, rc, str(contexts), "image_id", "image file not found")
    assert openai_server.requests == []
    assert cli(*base, "--coco", find_coco_mini()) == EXIT_OK
    [body] = bodies(openai_server)
    [(_, part)] = without_image(body)[1]
    ctx = image_of(body, val_contexts())
    assert image_bytes(part) == (find_coco_mini() / ctx.image).read_bytes()


def test_a_file_that_is_no_image_stops_the_run_before_any_call(
    openai_server, tmp_path, capsys
) -> None:
    coco = tmp_path / "coco"
    shutil.copytree(find_coco_mini() / "annotations", coco / "annotations")
    shutil.copytree(find_coco_mini() / "val2017", coco / "val2017")
    victim = sorted((coco / "val2017").iterdir())[-1]
    victim.write_text("not a picture")
    rc = cli("generate", "--coco", coco, "--split", "val2017", "--out", tmp_path / "o",
             "--teacher", OPENAI, "--base-url", openai_server.url, "--teacher-image")  # fmt: skip
    one_line_error(capsys, rc, str(victim), "image_id", "not an image")
    assert openai_server.requests == [] and not (tmp_path / "o").exists()


def test_the_cache_key_names_an_image_by_its_bytes(tmp_path) -> None:
    coco = find_coco_mini()
    contexts = read_split(coco, "val2017").contexts[:1]
    cfg = GenerateConfig(coco=str(coco), teacher_image=True, tasks=["detail"])
    [request] = build_requests(contexts, cfg, "gpt-4o", images=teacher_images(cfg, cfg, contexts))[
        0
    ]
    copy_ = tmp_path / "same.jpg"
    shutil.copy(request.images[0], copy_)
    moved = msgspec.structs.replace(request, images=(str(copy_),))
    assert request_key(OPENAI, moved) == request_key(OPENAI, request)
    copy_.write_bytes(copy_.read_bytes() + b"\0")
    assert request_key(OPENAI, moved) != request_key(OPENAI, request)
    off = msgspec.structs.replace(request, images=())
    assert request_key(OPENAI, off) != request_key(OPENAI, request)


def test_a_batch_waits_and_collects_with_images(openai_server, tmp_path) -> None:
    out = tmp_path / "o"
    assert gen(openai_server, out, "--teacher-image", "--batch") == EXIT_PENDING
    assert gen(openai_server, out, "--teacher-image", "--batch") == EXIT_OK
    assert json.loads((out / "stats.json").read_text())["samples"]["all"] == 6


# -- the ablation script -----------------------------------------------------------------------


def test_the_ablation_script_runs_both_arms_and_reports_the_shares(tmp_path) -> None:
    """`perf/teacher_image_ablation.py --loopback`: both commands run as a user runs them; the
    scripted teacher writes the same replies in both arms, so the filter's numbers agree and
    only the billed prompt (the images) differs."""
    repo = Path(__file__).resolve().parents[1]
    script = repo / "perf" / "teacher_image_ablation.py"
    command = [sys.executable, script, "--loopback", "--images", 3, "--tasks", "detail",
               "--work", tmp_path]  # fmt: skip
    done = subprocess.run(
        list(map(str, command)), capture_output=True, text=True, cwd=repo, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "--teacher-image" in done.stdout and "contradicted share of claims" in done.stdout
    results = json.loads((tmp_path / "summary.json").read_text())
    text, image = results["text"], results["image"]
    assert text["replies"] == image["replies"] == 3
    assert text["claims"] == image["claims"] and sum(text["claims"].values()) > 0
    assert text["contradicted_share"] == image["contradicted_share"]
    contexts = val_contexts()
    stats = json.loads((tmp_path / "image" / "stats.json").read_text())
    assert stats["teacher_image"] == {"detail": None, "max_side": None}
    assert image["tokens_in"] - text["tokens_in"] > 3 * min(
        openai_image_tokens("gpt-4o", c.width, c.height) for c in contexts.values()
    )
    bad = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=repo)
    assert bad.returncode == 2 and "--teacher" in bad.stderr
