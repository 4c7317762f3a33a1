"""The offline `rules` teacher on real COCO-MINI contexts: formats, grounding, determinism,
and its teacher interface (no LLM backend, no runner, prompt options refused)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llava_pose import pose
from llava_pose.cli import main
from llava_pose.coco import load_split
from llava_pose.errors import ConfigError
from llava_pose.filters import check_text, context_numbers
from llava_pose.llm.pricing import Price, PriceTable
from llava_pose.llm.runner import ModelOptions
from llava_pose.names import name_people
from llava_pose.parse import parse_qa
from llava_pose.prompts import build_request, load_prompts
from llava_pose.records import ChatRequest, ImageContext, Message, Person
from llava_pose.tasks import TASKS
from llava_pose.teachers import make_teacher
from llava_pose.teachers.captions import caption_activity, clean_caption, known_word
from llava_pose.teachers.llm import LLMTeacher
from llava_pose.teachers.rules import (
    DESCRIPTION,
    RulesTeacher,
    _counted,
    number_word,
    person_names,
    write,
)

# Words a repeated description may open with (data/rules/captions.yaml `openers`).
OPENERS = set(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "several",
        "many",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "one",
        "people",
        "men",
        "women",
        "children",
        "kids",
        "boys",
        "girls",
        "players",
        "his",
        "her",
        "their",
        "someone",
        "somebody",
        "each",
        "both",
        "few",
        "lots",
        "donuts",
    ]
)
PAIR = r"Question:\n[^\n]+\n===\nAnswer:\n[^\n]+"
CONVERSATION = re.compile(rf"{PAIR}(?:\n===\n{PAIR}){{2,5}}")
REASONING = re.compile(PAIR)


@pytest.fixture(scope="module")
def contexts(coco_mini: Path) -> list[ImageContext]:
    """Every image of COCO-MINI, with or without people."""
    return [
        ctx
        for split in ("train2017", "val2017")
        for ctx in load_split(coco_mini, split, human_only=False, check_images=False)
    ]


@pytest.fixture(scope="module")
def human(contexts: list[ImageContext]) -> list[ImageContext]:
    return [c for c in contexts if any(p.num_labelled for p in c.persons)]


def answers(task: str, text: str) -> list[str]:
    """The answer texts of a reply, checking its exact format on the way."""
    if task == "detail":
        assert "Question:" not in text and "===" not in text
        return [text]
    pattern = CONVERSATION if task == "conversation" else REASONING
    assert pattern.fullmatch(text), text
    parsed = parse_qa(text)
    assert parsed.problem is None
    expected = (3, 6) if task == "conversation" else (1, 1)
    assert expected[0] <= len(parsed.pairs) <= expected[1]
    return [p.answer for p in parsed.pairs] + [p.question for p in parsed.pairs]


def test_every_image_and_task_has_the_format_and_passes_the_filters(
    contexts: list[ImageContext],
) -> None:
    for ctx in contexts:
        numbers = context_numbers(ctx)
        for task in TASKS:
            text = write(ctx, task, seed=3)
            for answer in answers(task, text):
                assert check_text(answer, numbers) is None, answer
                assert not re.search(r"\d", answer), answer
                assert "{" not in answer and "  " not in answer and ".." not in answer


def test_detail_covers_every_nameable_person_and_the_others_together(
    human: list[ImageContext],
) -> None:
    """A paragraph per person PoseQA's rule can name; everyone else in one closing paragraph."""
    for ctx in human:
        text = write(ctx, "detail", seed=0)
        names = person_names(ctx)
        named = [n for n in names if n]
        assert len(set(named)) == len(named)
        paragraphs = text.split("\n\n")
        for name in named:
            mine = [p for p in paragraphs[1 : len(named) + 1] if p.lower().startswith(name)]
            assert len(mine) == 1, (ctx.image_id, name, text)
        # intro + one paragraph per named person + a closing one (the others, the activity)
        assert len(named) + 1 <= len(paragraphs) <= len(named) + 2
        if None in names:
            closing = paragraphs[-1].lower()
            assert "people" in closing or "crowd" in closing or "person" in closing, text


def test_detail_describes_the_pose_facts(human: list[ImageContext]) -> None:
    """What pose.py knows of a named person shows up in the text: one standing is said to
    stand, etc."""
    words = {
        "standing": ("standing",),
        "sitting": ("sitting", "seated"),
        "lying": ("lying",),
        "crouching": ("crouch", "squatting"),
        "kneeling": ("kneeling", "knees"),
        "bending": ("bending", "bent forward"),
    }
    seen = 0
    for ctx in human:
        text = write(ctx, "detail", seed=1).lower()
        names = person_names(ctx)
        for f in pose.scene_facts(ctx).persons:
            if f.posture and names[f.index]:
                seen += 1
                assert any(w in text for w in words[f.posture]), (ctx.image_id, f.posture)
            if f.facing == "camera" and names[f.index]:
                assert any(
                    w in text
                    for w in ("facing the camera", "towards the viewer", "facing the viewer")
                )
    assert seen >= 8


def test_same_context_and_seed_give_identical_text(human: list[ImageContext]) -> None:
    for ctx in human[:10]:
        for task in TASKS:
            assert write(ctx, task, 5) == write(ctx, task, 5)


def test_text_does_not_depend_on_the_process(human: list[ImageContext]) -> None:
    """No hash-order leaks: another interpreter with another hash seed writes the same."""
    ctxs = human[:4]
    payload = msgspec.json.encode(ctxs).decode()
    code = (
        "import sys, json, msgspec\n"
        "from llava_pose.records import ImageContext\n"
        "from llava_pose.teachers.rules import write\n"
        "ctxs = msgspec.json.decode(sys.stdin.read(), type=list[ImageContext])\n"
        "print(json.dumps([write(c, t, 2) for c in ctxs for t in ('conversation', 'detail', 'reasoning')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert json.loads(out.stdout) == [write(c, t, 2) for c in ctxs for t in TASKS]


def test_different_seeds_vary_the_wording(human: list[ImageContext]) -> None:
    ctx = max(human, key=lambda c: sum(p.num_labelled for p in c.persons))
    for task in TASKS:
        texts = {write(ctx, task, seed) for seed in range(8)}
        assert len(texts) >= 3, task


def test_persons_without_labelled_joints_still_get_sensible_text(human: list[ImageContext]) -> None:
    ctx = human[0]
    blank = tuple(Person(box=p.box, keypoints=((0.0, 0.0, 0),) * 17) for p in ctx.persons)
    ctx = msgspec.structs.replace(ctx, persons=blank)
    n = len(blank)
    for task in TASKS:
        text = write(ctx, task, 0)
        body = " ".join(answers(task, text)).lower()
        # (the scene descriptions quoted may say "sitting"; no pose claim may be made)
        for word in ("arm", "arms", "knee", "leg", "facing", "turned", "leaning", "upright"):
            assert not re.search(rf"\b{word}\b", body), (task, word, text)
        assert check_text(body) is None
    detail = write(ctx, "detail", 0).lower()
    assert ("single person" in detail or "one person" in detail) if n == 1 else "people" in detail


def test_image_without_people(contexts: list[ImageContext]) -> None:
    ctx = next(c for c in contexts if not c.persons)
    for task in TASKS:
        answers(task, write(ctx, task, 0))


def test_hidden_limbs_are_not_described() -> None:
    """A lone person whose legs are not labelled: nothing is said about legs or stance."""
    pts = {
        "nose": (0.5, 0.15, 2),
        "left eye": (0.51, 0.14, 2),
        "right eye": (0.49, 0.14, 2),
        "left shoulder": (0.56, 0.25, 2),
        "right shoulder": (0.44, 0.25, 2),
        "left elbow": (0.6, 0.35, 2),
        "left wrist": (0.62, 0.2, 2),
        "left hip": (0.54, 0.5, 2),
        "right hip": (0.46, 0.5, 2),
    }
    from llava_pose.records import KEYPOINT_NAMES

    kps = tuple(pts.get(n, (0.0, 0.0, 0)) for n in KEYPOINT_NAMES)
    ctx = ImageContext(
        image_id=1,
        image="train2017/000000000001.jpg",
        width=640,
        height=480,
        captions=("A woman waving at someone in a park.",),
        persons=(Person(box=(0.4, 0.05, 0.65, 0.55), keypoints=kps),),
    )
    for seed in range(5):
        for task in TASKS:
            body = " ".join(answers(task, write(ctx, task, seed))).lower()
            for word in ("leg", "legs", "knee", "knees", "foot", "feet", "stride", "right arm"):
                assert not re.search(rf"\b{word}\b", body), (task, word, body)
    assert "left arm" in write(ctx, "detail", 0)


def test_the_teacher_writes_each_reply_from_context_task_and_seed(
    human: list[ImageContext],
) -> None:
    teacher = make_teacher("rules")
    assert isinstance(teacher, RulesTeacher)
    assert teacher.describe() == DESCRIPTION
    assert (teacher.spec, teacher.model, teacher.free, teacher.reads_prompt) == (
        "rules",
        "",
        True,
        False,
    )
    assert teacher.price(PriceTable.load()) == Price(0.0, 0.0)
    ctx = human[0]
    request = ChatRequest(
        id="x",
        model="",
        messages=(Message("user", "hi"),),  # not read
        seed=4,
        meta={"task": "detail"},
        context=ctx,
    )
    done = RulesTeacher.answer(request).completion
    assert done is not None
    assert done.text == write(ctx, "detail", 4)
    assert teacher.write(ctx, "detail", 4) == done.text
    assert (done.finish_reason, done.input_tokens, done.output_tokens) == ("stop", 0, 0)


def test_a_run_answers_real_requests_and_fails_the_unanswerable_alone(
    human: list[ImageContext], tmp_path: Path
) -> None:
    prompts = load_prompts("paper")
    ctxs = human[:6]
    requests = [build_request(c, t, model="", prompts=prompts, seed=9) for c in ctxs for t in TASKS]
    requests.append(ChatRequest(id="no-context", model="", messages=(), meta={"task": "detail"}))
    requests.append(
        ChatRequest(id="poem", model="", messages=(), meta={"task": "poem"}, context=ctxs[0])
    )
    seen: list[str] = []
    with make_teacher("rules").open(ModelOptions(), tmp_path / "cache.sqlite", "teacher") as run:
        results = run.run(requests, on_result=lambda r, _: seen.append(r.id))
    assert seen == [r.id for r in requests]
    for request, result in zip(requests[:-2], results[:-2], strict=True):
        assert result.ok, result.error
        assert result.completion is not None
        assert request.context is not None
        assert result.completion.text == write(request.context, request.meta["task"], 9)
    assert results[-2].kind == "failed" and "context" in (results[-2].error or "")
    assert results[-1].kind == "failed" and "'poem'" in (results[-1].error or "")
    s = run.stats
    assert (s.requests, s.called, s.failed, s.cost, s.input_tokens) == (
        len(requests),
        len(requests) - 2,
        2,
        0,
        0,
    )
    assert not (tmp_path / "cache.sqlite").exists()  # instant and deterministic: nothing kept


def test_an_llm_spec_makes_an_llm_teacher() -> None:
    teacher = make_teacher("openai:gpt-4o", dry_run=True, prompt={"format": "compact"})
    assert isinstance(teacher, LLMTeacher)
    assert (teacher.spec, teacher.model, teacher.free, teacher.reads_prompt) == (
        "openai:gpt-4o",
        "gpt-4o",
        False,
        True,
    )


@pytest.mark.parametrize(
    ("option", "value"), [("format", "compact"), ("fewshot", True), ("cues", True)]
)
def test_prompt_options_are_an_error_with_the_offline_teacher(option: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        make_teacher("rules", prompt={"format": "paper", "fewshot": False, option: value})
    assert str(e.value) == (
        f"--{option}: the offline teacher (rules) reads no prompt; drop it or use an LLM teacher"
    )
    # their defaults are no error
    assert isinstance(
        make_teacher("rules", prompt={"format": "paper", "fewshot": False, "cues": False}),
        RulesTeacher,
    )


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["generate"], ["--fewshot"]),
        (["generate"], ["--format", "compact"]),
        (["bench", "build", "--teacher", "rules"], ["--fewshot"]),
        (["bench", "build", "--teacher", "rules"], ["--format", "compact"]),
    ],
)
def test_the_cli_refuses_prompt_options_with_rules_before_any_work(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command, flag
) -> None:
    out = tmp_path / "o"
    source = ["--coco", str(coco_mini), "--split", "val2017"]
    assert main([*command, *source, *flag, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]}: the offline teacher (rules) reads no prompt" in err
    assert "Traceback" not in err and not out.exists()


def test_caption_helpers() -> None:
    assert clean_caption("A PERSON IS SKIING ON THE SLOPE") == "a person is skiing on the slope"
    assert (
        clean_caption("A picture of a man riding a bike on a a road.")
        == "a man riding a bike on a road"
    )
    assert clean_caption("A clock on a building that says 8:25.") is None  # digits are never quoted
    assert clean_caption("Two dogs") is None  # too short to say anything
    assert caption_activity("two men riding a wave on surfboards") == (
        "riding a wave on surfboards",
        True,
    )
    assert caption_activity("a man is standing next to a bike") == (
        "standing next to a bike",
        False,
    )
    assert caption_activity("a plane floating on top of a lake") is None  # nobody does this
    assert caption_activity("a building with a man") is None


def test_counts_and_plurals_are_words() -> None:
    assert number_word(3) == "three" and number_word(99) == "many"
    assert [_counted(c, 2) for c in ("wine glass", "skis", "bench", "knife")] == [
        "two wine glasses",
        "two sets of skis",
        "two benches",
        "two knives",
    ]
    assert _counted("umbrella", 1) == "an umbrella"


def _scene_ctx(*captions: str) -> ImageContext:
    return ImageContext(image_id=1, image="x.jpg", width=100, height=100, captions=captions)


def test_a_snowboarder_on_a_slope_is_not_skiing() -> None:
    from llava_pose.teachers.rules import find_activity

    found = find_activity(_scene_ctx("A snowboarder rides down a snowy slope."))
    assert found is not None and found["name"] == "snowboarding"
    skier = find_activity(_scene_ctx("A skier going down a slope."))
    assert skier is not None and skier["name"] == "skiing"


def test_advice_and_cues_hold_only_where_facts_and_captions_support_them() -> None:
    from dataclasses import replace as dc_replace

    from llava_pose.pose import pose_facts
    from llava_pose.teachers.rules import _t, _texts

    meal = next(a for a in _t()["activities"] if a["name"] == "meal")
    standing = dc_replace(
        pose_facts(Person((0.1, 0.1, 0.5, 0.9), ((0.0, 0.0, 0),) * 17), 100, 100),
        posture="standing",
    )
    sitting = dc_replace(standing, posture="sitting")
    at_table = "three men at a table with pizza"
    assert not any("forearms" in t for t in _texts(meal["advice"], standing, at_table))
    assert any("forearms" in t for t in _texts(meal["advice"], sitting, at_table))
    assert not any(
        "table" in t for t in _texts(meal["advice"], sitting, "a boy on a couch with food")
    )
    skiing = next(a for a in _t()["activities"] if a["name"] == "skiing")
    assert not any("pole" in t for t in _texts(skiing["cues"]["arm_reach"], standing, "a skier"))
    assert any(
        "pole" in t for t in _texts(skiing["cues"]["arm_reach"], standing, "a skier with poles")
    )


def test_a_caption_the_keypoints_contradict_is_never_quoted() -> None:
    from tests.test_pose import FRONT, H, W, person

    captions = (
        "A man sitting on a bench by the road.",
        "A man standing by the road.",
        "A man waiting by the road.",
    )
    ctx = ImageContext(
        image_id=9,
        image="x.jpg",
        width=W,
        height=H,
        captions=captions,
        objects=(),
        persons=(person(FRONT),),
    )
    texts = [write(ctx, task, seed) for task in TASKS for seed in range(12)]
    assert not any("bench" in t for t in texts)
    assert any("standing by the road" in t or "waiting by the road" in t for t in texts)


# -- the text read against the pictures (issue 17): one test per cause, on real images -------

SEEDS = range(8)


def by_id(contexts: list[ImageContext], image_id: int) -> ImageContext:
    return next(c for c in contexts if c.image_id == image_id)


def all_text(ctx: ImageContext, seeds: range = SEEDS) -> list[str]:
    return [write(ctx, task, seed) for task in TASKS for seed in seeds]


def answer_text(ctx: ImageContext, seeds: range = SEEDS) -> str:
    """Every answer (no question) the teacher writes for the image, over tasks and seeds."""
    out = []
    for task in TASKS:
        for seed in seeds:
            text = write(ctx, task, seed)
            out += [text] if task == "detail" else [p.answer for p in parse_qa(text).pairs]
    return "\n".join(out)


def test_no_misspelled_description_word_is_ever_copied(contexts: list[ImageContext]) -> None:
    """A word of a description that is no English word and that no other description of the
    image uses ('standihng', 'douchey', 'fut') never reaches the text; nor does a description
    that starts without its article ('large group of people ...')."""
    typos: set[str] = set()
    for ctx in contexts:
        words = [set(re.findall(r"[a-z]+", c.lower())) for c in ctx.captions]
        categories = {w for o in ctx.objects for w in o.category.split()}
        mine = {
            w
            for i, ws in enumerate(words)
            for w in ws
            if not known_word(w)
            and w not in categories
            and not any(w in other for j, other in enumerate(words) if j != i)
        }
        typos |= mine
        text = " ".join(all_text(ctx, range(4))).lower()
        for w in mine:
            assert not re.search(rf"\b{w}\b", text), (ctx.image_id, w)
        for m in re.finditer(r"\blooks like (\w+)", text):
            assert m.group(1) in OPENERS, (ctx.image_id, m.group(0))
    assert {"standihng", "douchey", "fut"} <= typos


def test_descriptions_that_contradict_each_other_are_never_both_said(
    contexts: list[ImageContext],
) -> None:
    # val 117645: a snowboarder; one description says skis, another "a couple skiers"
    text = " ".join(all_text(by_id(contexts, 117645))).lower()
    assert "snowboard" in text and not re.search(r"\b(skis|skiers|couple)\b", text)
    # train 183872: a snowboarder (annotated board); three descriptions say skiing
    text = " ".join(all_text(by_id(contexts, 183872))).lower()
    assert "snowboard" in text and "skiing" not in text
    # val 501368: two say a woman, one a child
    text = " ".join(all_text(by_id(contexts, 501368))).lower()
    assert "woman" in text and "child" not in text


def test_people_are_named_only_as_poseqa_names_them(contexts: list[ImageContext]) -> None:
    """No "sixth person from the right": an order from the left only where PoseQA's rule
    allows one (2-4 people of clear size and spacing), and nobody named in a crowd otherwise
    than by size or what they hold."""
    place = re.compile(
        r"\bthe (?:\w+ )?person (?:furthest to the (?:left|right)|from the (?:left|right)"
        r"|on the (?:left|right)\b(?! side)|in the middle\b(?! of))",
        re.IGNORECASE,
    )
    positional = 0
    for ctx in contexts:
        names = name_people(ctx)
        allowed = {*names.positional.values(), *names.other.values()}
        text = answer_text(ctx, range(3))
        for m in place.finditer(text):
            assert m.group(0).lower() in allowed, (ctx.image_id, m.group(0))
            positional += 1
        assert "farthest" not in text
    assert positional > 20  # the images of two to four people still use the order
    for crowd in (217285, 129648, 370162):  # stadium, skate park, a queue for food
        text = answer_text(by_id(contexts, crowd))
        assert not re.search(r"\b(second|third|fourth|fifth|sixth|seventh)\b", text), crowd


def test_a_crowd_gets_no_count_and_no_claim_that_all_are_clear(
    contexts: list[ImageContext],
) -> None:
    stadium = answer_text(by_id(contexts, 217285))  # thirteen annotated, dozens in the stands
    assert "All of them are clear" not in stadium and "Each of them can be seen" not in stadium
    assert "thirteen" not in stadium
    assert "crowd" in stadium or "full of people" in stadium
    assert "the person holding the baseball bat" in stadium  # the prominent batter is described
    three = answer_text(by_id(contexts, 100667))  # three men, each named and posed
    assert "three people" in three
    assert "All of them are clear" in three or "Each of them can be seen" in three


def _adult_only() -> list[str]:
    """Texts of teacher.yaml that are for adults only (workplace and posture coaching)."""
    from llava_pose.teachers.rules import _t

    def entries(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            if "text" in node:
                return [node]
            return [e for v in node.values() for e in entries(v)]
        if isinstance(node, list):
            return [e for v in node for e in entries(v)]
        return []

    return [e["text"] for e in entries(_t()) if e.get("subjects") == ["adult"]]


def test_advice_suits_who_the_descriptions_say_the_person_is(
    contexts: list[ImageContext],
) -> None:
    adult_only = _adult_only()
    assert any("get up to move now and then" in t for t in adult_only)
    seeds = range(40)
    for child in (37666, 181303, 544238):  # a boy on a skateboard, a boy with a kite, a girl
        replies = [write(by_id(contexts, child), "reasoning", s) for s in seeds]
        assert any("advice" in r or "improve" in r for r in replies), child
        for r in replies:
            assert not any(t in r for t in adult_only), (child, r)
    man = [write(by_id(contexts, 109313), "reasoning", s) for s in seeds]
    assert any(t in r for r in man for t in adult_only)  # the same advice for a man is given
    # a toddler (real boy with a kite, described as one): no posture advice at all
    kite = by_id(contexts, 181303)
    toddler = msgspec.structs.replace(
        kite,
        captions=(
            "A toddler standing in a field with a kite.",
            "A baby holding a kite on the grass.",
            "A toddler with a kite in a park.",
        ),
    )
    for s in seeds:
        r = write(toddler, "reasoning", s)
        assert "advice" not in r and "improve" not in r


def test_office_advice_is_never_given_to_a_seated_child() -> None:
    from tests.test_pose import SEATED, H, W, person

    def seated(*captions: str) -> ImageContext:
        return ImageContext(1, "x.jpg", W, H, captions, persons=(person(SEATED),))

    office = "Sit with the back supported and the feet flat"
    man = seated("A man sitting on a chair.", "A man sits in a room.", "A man seated indoors.")
    boy = seated("A boy sitting on a chair.", "A boy sits in a room.", "A boy seated indoors.")
    assert any(office in write(man, "reasoning", s) for s in range(40))
    kid = [write(boy, "reasoning", s) for s in range(40)]
    assert any("advice" in r or "improve" in r for r in kid)
    assert not any(office in r for r in kid)


def test_a_raised_foot_is_never_said_to_be_planted(contexts: list[ImageContext]) -> None:
    # val 549055: a surfer in the air, right foot up; train 37666: a boy pushing a skateboard,
    # one foot up; val 165518: a rider, feet on the pegs
    for image_id in (549055, 37666, 165518):
        text = " ".join(all_text(by_id(contexts, image_id)))
        assert "planted" not in text and "stand with the feet" not in text, image_id
    for image_id in (549055, 37666):
        assert "foot is lifted" in " ".join(all_text(by_id(contexts, image_id))) or (
            "foot is raised" in " ".join(all_text(by_id(contexts, image_id)))
        )
    # a man standing on both feet wide apart still is
    assert "planted wide apart" in " ".join(all_text(by_id(contexts, 109313)))


def test_pronouns_follow_the_noun_that_names_the_person(contexts: list[ImageContext]) -> None:
    """'The man ... standing on his feet', never 'their': the noun commits the text."""
    for image_id, noun, pronoun in ((109313, "man", "his"), (37666, "boy", "his")):
        ctx = by_id(contexts, image_id)
        assert person_names(ctx) == [f"the {noun}"]
        text = answer_text(ctx)
        assert re.search(rf"\b{pronoun}\b", text, re.IGNORECASE)
        for sentence in re.split(r"(?<=[.?!])\s+", text):
            assert not re.search(r"\b(their|they|them|themselves)\b", sentence, re.I), sentence
    # a neutral noun takes the sex the descriptions agree on ("a little boy ... his head")
    kite = by_id(contexts, 181303)
    assert person_names(kite) == ["the person"]
    text = answer_text(kite)
    assert re.search(r"\bhis\b", text) and not re.search(r"\b(their|they|them)\b", text)
    # and stays neutral where they say nothing of it
    neutral = msgspec.structs.replace(
        kite,
        captions=(
            "A child holding a kite on a field.",
            "A kid standing on the grass with a kite.",
            "A child playing with a kite in a park.",
        ),
    )
    text = answer_text(neutral)
    assert "their" in text and not re.search(r"\b(his|him|he)\b", text)
