"""Teacher replies become LLaVA records: shape, ids, <image> placement, filters."""

from __future__ import annotations

import json

from llava_pose.dataset import assemble, write_dataset, write_extras
from llava_pose.io import file_set
from llava_pose.prompts import build_request, load_prompts
from llava_pose.records import Completion, ImageContext, Obj, Person, Turn

CTX = ImageContext(
    image_id=391895,
    image="train2017/000000391895.jpg",
    width=640,
    height=360,
    captions=("A man rides a bike.",),
    objects=(Obj("bicycle", (0.2, 0.5, 0.6, 0.95)),),
    persons=(Person((0.3, 0.1, 0.55, 0.9), ((0.4, 0.2, 2),) * 17),),
)
P = load_prompts("paper")


def reply(text: str, finish: str = "stop") -> Completion:
    return Completion(text=text, finish_reason=finish)


def req(task: str):
    return build_request(CTX, task, model="m", prompts=P, seed=0)


CONV = "Question:\nWhat is he riding?\n===\nAnswer:\nA bicycle.\n===\nQuestion:\nIs he seated?\n===\nAnswer:\nYes, on the saddle."


def test_conversation_is_one_multi_turn_record_with_image_first() -> None:
    a = assemble(req("conversation"), reply(CONV))
    assert len(a.samples) == 1 and a.turns == 2
    s = a.samples[0]
    assert s.id == "391895-conv" and s.image == "train2017/000000391895.jpg"
    assert s.conversations == (
        Turn("human", "<image>\nWhat is he riding?"),
        Turn("gpt", "A bicycle."),
        Turn("human", "Is he seated?"),
        Turn("gpt", "Yes, on the saddle."),
    )


def test_split_conversations_gives_one_record_per_pair() -> None:
    a = assemble(req("conversation"), reply(CONV), split_conversations=True)
    assert [s.id for s in a.samples] == ["391895-conv-0", "391895-conv-1"]
    assert all(s.conversations[0].value.startswith("<image>\n") for s in a.samples)
    assert all(len(s.conversations) == 2 for s in a.samples)


def test_detail_uses_the_table4_instruction_as_the_human_turn() -> None:
    r = req("detail")
    a = assemble(r, reply("The man pedals along the road, leaning forward."))
    (s,) = a.samples
    assert s.conversations[0] == Turn("human", "<image>\n" + r.meta["instruction"])
    assert s.conversations[1].value == "The man pedals along the road, leaning forward."


def test_filters_drop_bad_pairs_and_count_them() -> None:
    text = CONV + "\n===\nQuestion:\nWhere is he?\n===\nAnswer:\nHis keypoints put him at 0.45."
    a = assemble(req("conversation"), reply(text))
    assert a.turns == 2 and a.filtered == {"mentions_source": 1}
    a = assemble(req("reasoning"), reply("Question: Why?\nAnswer: He is at [0.3, 0.1]."))
    assert a.samples == [] and a.filtered == {"quotes_numbers": 1}
    a = assemble(req("detail"), reply("   "))
    assert a.samples == [] and a.filtered == {"empty": 1}
    a = assemble(req("reasoning"), reply("I cannot help with that."))
    assert a.samples == [] and a.filtered == {"malformed": 1}
    assert a.rejected == [
        {
            "id": "391895-reasoning",
            "image": CTX.image,
            "task": "reasoning",
            "filter": "malformed",
            "question": None,
            "answer": "I cannot help with that.",
        }
    ]


def test_every_dropped_pair_is_kept_with_its_filter() -> None:
    text = CONV + "\n===\nQuestion:\nWhere is he?\n===\nAnswer:\nHis keypoints put him at 0.45."
    a = assemble(req("conversation"), reply(text))
    [line] = a.rejected
    assert (line["filter"], line["question"]) == ("mentions_source", "Where is he?")
    cut = assemble(
        req("conversation"), reply(CONV + "\n===\nQuestion:\nAnd?\n===\nAnswer:\nHe is", "length")
    )
    assert [(r["filter"], r["answer"]) for r in cut.rejected] == [("truncated", "He is")]
    assert assemble(req("conversation"), reply(CONV)).rejected == []


def test_truncated_replies_lose_only_the_cut_part() -> None:
    a = assemble(
        req("conversation"), reply(CONV + "\n===\nQuestion:\nAnd?\n===\nAnswer:\nHe is", "length")
    )
    assert a.turns == 2 and a.filtered == {"truncated": 1}
    a = assemble(req("detail"), reply("The man pedals and", "length"))
    assert a.samples == [] and a.filtered == {"truncated": 1}


def test_write_dataset_orders_and_merges(tmp_path) -> None:
    conv = assemble(req("conversation"), reply(CONV)).samples
    detail = assemble(req("detail"), reply("He rides.")).samples
    with file_set(tmp_path, "stats.json", {"complete": False}) as out:
        files = write_dataset(
            out, {"conversation": conv, "detail": detail}, ["conversation", "detail"]
        )
        out.json("stats.json", {"complete": True})
    assert files == {
        "conversation": "conversation.json",
        "detail": "detail.json",
        "all": "llava_pose_all.json",
    }
    merged = json.loads((tmp_path / "llava_pose_all.json").read_text())
    assert [r["id"] for r in merged] == ["391895-conv", "391895-detail"]
    assert merged[0]["conversations"][0] == {
        "from": "human",
        "value": "<image>\nWhat is he riding?",
    }
    assert set(merged[0]) == {"id", "image", "conversations"}
    assert not list(tmp_path.glob(".*tmp"))


def test_extras_are_sorted_and_a_stale_claims_file_goes(tmp_path) -> None:
    text = "Question: Why?\nAnswer: He is at [0.3, 0.1]."
    rejected = assemble(req("reasoning"), reply(text)).rejected
    rejected += assemble(req("conversation"), reply(text)).rejected
    (tmp_path / "claims.jsonl").write_text("old\n")

    def extras(rejected: list, claims: list | None) -> dict[str, str]:
        with file_set(tmp_path, "stats.json", {"complete": False}) as out:
            files = write_extras(out, rejected, claims)
            out.json("stats.json", {"complete": True})
        return files

    files = extras(rejected, None)
    assert files == {"rejected": "rejected.jsonl"} and not (tmp_path / "claims.jsonl").exists()
    lines = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [x["task"] for x in lines] == ["conversation", "reasoning"]
    assert extras([], [])["claims"] == "claims.jsonl"
    assert (tmp_path / "rejected.jsonl").read_text() == ""


def test_the_pose_filter_drops_only_the_pair_the_keypoints_contradict() -> None:
    from tests.test_pose import FRONT, H, W, person

    standing = ImageContext(
        image_id=7,
        image="train2017/000000000007.jpg",
        width=W,
        height=H,
        captions=("A man.",),
        objects=(),
        persons=(person(FRONT),),
    )
    request = build_request(standing, "conversation", model="m", prompts=P)
    text = (
        "Question:\nWhat is he doing?\n===\nAnswer:\nThe man is standing.\n===\n"
        "Question:\nIs he resting?\n===\nAnswer:\nYes, the man is sitting on a bench."
    )
    checked = assemble(request, reply(text), check_poses=True)
    [sample] = checked.samples
    assert [t.value for t in sample.conversations][1::2] == ["The man is standing."]
    assert checked.filtered == {"contradicts_pose": 1}
    assert checked.claims == {"supported": 1, "contradicted": 1}
    [dropped] = checked.rejected
    assert dropped["filter"] == "contradicts_pose"
    assert [c["verdict"] for c in dropped["claims"]] == ["contradicted"]
    [line] = checked.claim_lines  # the kept answer's claims, at its turn in the record
    assert line["id"] == sample.id and line["image_id"] == 7
    assert [(t["turn"], [c["verdict"] for c in t["claims"]]) for t in line["turns"]] == [
        (1, ["supported"])
    ]
    split = assemble(request, reply(text), check_poses=True, split_conversations=True)
    assert [ln["id"] for ln in split.claim_lines] == ["7-conv-0"]
    unchecked = assemble(request, reply(text))  # off: nothing checked, nothing dropped
    assert unchecked.turns == 2 and not unchecked.filtered and not unchecked.claims
