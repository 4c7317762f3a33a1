"""The Vicuna-v1 prompt, labels, image padding, TRL's batches and the validation pass, on real
COCO-MINI images (the llava family; tests/train/test_train_families.py covers the others)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from tests.train.llava_records import TEXT_ONLY, coco_records, write_records
from tests.train.release_records import coco2014_root, release_records

from llava_pose.errors import ConfigError, InputError
from llava_pose.train.data import (
    IGNORE_INDEX,
    Encoder,
    Record,
    count_image_tokens,
    load_records,
    record_messages,
    sft_dataset,
    validate,
)
from llava_pose.vlm.families import families
from llava_pose.vlm.images import expand2square, load_image, mean_colour
from llava_pose.vlm.tiny import build_tiny_processor

pytestmark = pytest.mark.train

# Written out by hand from LLaVA's conv_vicuna_v1 / SeparatorStyle.TWO, not from our template file.
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


@pytest.fixture(scope="module")
def encoder(processor) -> Encoder:
    token_id, n = count_image_tokens(processor)
    return Encoder(
        processor.tokenizer, image_token_id=token_id, num_image_tokens=n, max_length=2048
    )


def _record(image: str | None, *turns: str) -> Record:
    speakers = ("human", "gpt")
    return Record("r", "f.json", image, tuple((speakers[i % 2], t) for i, t in enumerate(turns)))


def test_the_llava_prompt_is_llava_1_5s_vicuna_v1(processor) -> None:
    template = families()["llava"].prompt_template()
    record = _record(None, "<image>\nWhat is he doing?", "Running.", "Why?", "A race.")
    record = Record("r", "f.json", "x.jpg", record.turns)
    text = processor.apply_chat_template(
        record_messages(record), chat_template=template, tokenize=False
    )
    expected = f"<s> {SYSTEM} USER: <image>\nWhat is he doing? ASSISTANT: Running.</s>USER: Why? ASSISTANT: A race.</s>"
    assert text == expected
    asking = processor.apply_chat_template(
        record_messages(record)[:1],
        chat_template=template,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert asking == f"<s> {SYSTEM} USER: <image>\nWhat is he doing? ASSISTANT:"


def test_labels_are_the_answers_and_eos_only_token_by_token(
    encoder: Encoder, processor, coco_mini: Path
) -> None:
    image = str(
        coco_mini / "train2017" / sorted(p.name for p in (coco_mini / "train2017").iterdir())[0]
    )
    answers = ["A man rides a wave on a surfboard.", "He is standing, knees bent, arms out."]
    record = _record(
        image, "<image>\nWhat is the man doing?", answers[0], "How does he stand?", answers[1]
    )
    encoded = encoder.encode(record)
    ids, labels = encoded.input_ids, encoded.labels
    tokenizer = processor.tokenizer
    n_image = encoder.num_image_tokens
    assert ids[0] == tokenizer.bos_token_id and labels[0] == IGNORE_INDEX
    assert ids.count(encoder.image_token_id) == n_image
    # every label is either ignored or the very token at that position
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids, strict=True))
    # contiguous runs of learned tokens decode to exactly " answer</s>", in order
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    assert [tokenizer.decode(run) for run in runs] == [f"{a}</s>" for a in answers]
    # the word-initial space of each answer is learned with it (Llama's "▁"), as in LLaVA
    assert all(tokenizer.convert_ids_to_tokens(run[0]).startswith("▁") for run in runs)
    # and everything else is the prompt: the independently written template with N image tokens
    expected = (
        f"{SYSTEM} USER: "
        + "<image>" * n_image
        + f"\nWhat is the man doing? ASSISTANT: {answers[0]}</s>"
        f"USER: How does he stand? ASSISTANT: {answers[1]}</s>"
    )
    assert tokenizer.decode(ids[1:]) == expected
    for token, label in zip(ids, labels, strict=True):
        if token == encoder.image_token_id or token == tokenizer.bos_token_id:
            assert label == IGNORE_INDEX


def test_encoding_matches_the_processor(
    encoder: Encoder, processor, coco_mini: Path, tmp_path: Path
) -> None:
    name = sorted(p.name for p in (coco_mini / "val2017").iterdir())[0]
    image = str(coco_mini / "val2017" / name)
    row = {
        "id": "dog",
        "image": f"val2017/{name}",
        "conversations": [
            {"from": "human", "value": "Where is the dog?\n<image>"},
            {"from": "gpt", "value": "On the sofa."},
        ],
    }
    data = write_records(tmp_path / "d.json", [row])
    (record,), _ = load_records([str(data)], str(coco_mini))
    assert record.image == image
    text = encoder.render(record)
    assert text.startswith(
        f"<s> {SYSTEM} USER: <image>\nWhere is the dog? ASSISTANT:"
    )  # <image> moved first
    via_processor = processor(
        text=text,
        images=load_image(image, mean_colour(processor.image_processor)),
        add_special_tokens=False,
    )
    assert encoder.encode(record).input_ids == via_processor["input_ids"][0]


def test_image_is_padded_to_a_square_with_the_mean_colour(processor, coco_mini: Path) -> None:
    from PIL import Image

    colour = mean_colour(processor.image_processor)
    assert colour == (122, 116, 104)  # CLIP's mean, as LLaVA pads
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    square = expand2square(wide, colour)
    assert square.size == (40, 40)
    assert square.getpixel((0, 0)) == colour and square.getpixel((20, 20)) == (255, 0, 0)
    assert square.getpixel((20, 39)) == colour
    tall = expand2square(Image.new("RGB", (10, 30), (0, 0, 255)), colour)
    assert (
        tall.size == (30, 30)
        and tall.getpixel((0, 15)) == colour
        and tall.getpixel((15, 15)) == (0, 0, 255)
    )


def test_trls_batches_are_the_encoders(
    encoder: Encoder, processor, tmp_path: Path, coco_mini: Path
) -> None:
    """What training feeds the model (the dataset through TRL's collator, as SFTTrainer makes
    it) is what validation measured: the same ids, the answers and </s> as the only labels."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    data = write_records(tmp_path / "d.json", [*coco_records(coco_mini, 2), TEXT_ONLY])
    records, bad = load_records([str(data)], str(coco_mini))
    assert not bad and [r.image is None for r in records] == [False, False, True]
    colour = mean_colour(processor.image_processor)
    dataset = sft_dataset(records, colour)
    rows = [dataset[i] for i in range(3)]
    assert [len(r["images"]) for r in rows] == [1, 1, 0]
    assert rows[0]["images"][0].size[0] == rows[0]["images"][0].size[1]  # padded square
    assert rows[0]["messages"][0]["content"][0] == {"type": "image"}
    collate = DataCollatorForVisionLanguageModeling(
        processor=processor, assistant_only_loss=True, chat_template=encoder.chat_template
    )
    batch = collate([rows[2], rows[0], rows[1]])
    side = processor.image_processor.crop_size["height"]
    assert batch["pixel_values"].shape == (2, 3, side, side)
    for k, record in enumerate([records[2], records[0], records[1]]):
        ours = encoder.encode(record)
        n = int(batch["attention_mask"][k].sum())
        assert batch["input_ids"][k, :n].tolist() == ours.input_ids
        assert batch["labels"][k, :n].tolist() == ours.labels
        assert (batch["labels"][k, n:] == IGNORE_INDEX).all()  # padding on the right


def test_validation_reports_every_bad_record(
    encoder: Encoder, tmp_path: Path, coco_mini: Path
) -> None:
    good = coco_records(coco_mini, 3)
    missing = {**good[0], "id": "missing", "image": "train2017/000000999999.jpg"}
    two_images = {**good[1], "id": "two-images"}
    two_images["conversations"] = [
        {"from": "human", "value": "<image>\nLook.<image>"},
        {"from": "gpt", "value": "I see."},
    ]
    long_question = " ".join(["Describe the left wrist and the right knee of every person."] * 40)
    truncated = {
        **good[2],
        "id": "truncated",
        "conversations": [
            {"from": "human", "value": f"<image>\n{long_question}"},
            {"from": "gpt", "value": "Fine."},
        ],
    }
    not_alternating = {
        "id": "gpt-first",
        "conversations": [{"from": "gpt", "value": "Hello."}, {"from": "human", "value": "Hi."}],
    }
    text_with_image_token = {
        "id": "no-file",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat?"},
            {"from": "gpt", "value": "Nothing."},
        ],
    }
    root = tmp_path / "root"  # COCO-MINI's images linked in, and one corrupt file
    (root / "corrupt").mkdir(parents=True)
    (root / "train2017").symlink_to(coco_mini / "train2017")
    (root / "corrupt" / "broken.jpg").write_bytes(b"not a jpeg")
    broken = {**good[0], "id": "broken", "image": "corrupt/broken.jpg"}
    rows = [*good, missing, two_images, truncated, not_alternating, text_with_image_token, broken]
    data = write_records(tmp_path / "data.json", rows)
    records, structural = load_records([str(data)], str(root))
    short = Encoder(
        encoder.tokenizer,
        image_token_id=encoder.image_token_id,
        num_image_tokens=encoder.num_image_tokens,
        max_length=400,
    )
    kept, report = validate(records, short, structural=structural)
    reasons = {b.id: b.reason for b in report.bad}
    assert [r.id for r in kept] == [g["id"] for g in good]
    assert set(reasons) == {"missing", "two-images", "truncated", "gpt-first", "no-file", "broken"}
    assert reasons["missing"].startswith("image not found")
    assert "2 <image> tokens" in reasons["two-images"]
    assert "truncated away" in reasons["truncated"] and "--max-length 400" in reasons["truncated"]
    assert "expected 'human'" in reasons["gpt-first"]
    assert "no 'image' file" in reasons["no-file"]
    assert reasons["broken"].startswith("image cannot be opened")
    assert report.records == len(rows) and len(report.lengths) == len(good)
    assert "6 bad" in report.summary()
    # each bad record is named by its file, its index in the file and its id
    assert sorted((b.index, b.id) for b in report.bad) == [
        (3, "missing"),
        (4, "two-images"),
        (5, "truncated"),
        (6, "gpt-first"),
        (7, "no-file"),
        (8, "broken"),
    ]
    missing_bad = next(b for b in report.bad if b.id == "missing")
    assert str(missing_bad).startswith(f"{data}: [3] (id 'missing'): image not found")
    assert missing_bad.row() == {
        "id": "missing",
        "file": str(data),
        "index": 3,
        "reason": missing_bad.reason,
    }


def test_max_length_that_cuts_image_tokens_is_reported(encoder: Encoder, coco_mini: Path) -> None:
    image = str(next((coco_mini / "train2017").iterdir()))
    tiny_limit = Encoder(
        encoder.tokenizer,
        image_token_id=encoder.image_token_id,
        num_image_tokens=encoder.num_image_tokens,
        max_length=20,
    )
    _, report = validate([_record(image, "<image>\nHi", "Hello.")], tiny_limit)
    assert "cuts into the image tokens" in report.bad[0].reason


def test_kept_but_truncated_records_are_counted(encoder: Encoder, coco_mini: Path) -> None:
    image = str(next((coco_mini / "train2017").iterdir()))
    long_answer = " ".join(["The person raises the left arm above the head."] * 30)
    record = _record(image, "<image>\nDescribe.", long_answer)
    full = encoder.encode(record).full_length
    limit = Encoder(
        encoder.tokenizer,
        image_token_id=encoder.image_token_id,
        num_image_tokens=encoder.num_image_tokens,
        max_length=full - 10,
    )
    kept, report = validate([record], limit)
    assert kept == [record] and report.truncated == 1 and report.lengths == [full - 10]


def test_several_files_mix_and_image_root_defaults_to_each_files_folder(
    tmp_path: Path, coco_mini: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train2017").symlink_to(coco_mini / "train2017")
    first = write_records(tmp_path / "a" / "pose.json", coco_records(coco_mini, 2))
    second = write_records(tmp_path / "mix.json", [TEXT_ONLY])
    records, bad = load_records([str(first), str(second)])
    assert not bad and len(records) == 3
    assert records[0].image == str(
        tmp_path.resolve() / "a" / "train2017" / Path(records[0].image).name
    )
    assert records[2].id == "7" and records[2].image is None
    assert load_records([str(first), str(second)], max_samples=1)[0] == records[:1]


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: invalid JSON"):
        load_records([str(bad_json)])
    not_list = tmp_path / "obj.json"
    not_list.write_text(json.dumps({"id": 1}))
    with pytest.raises(InputError, match="expected a JSON list"):
        load_records([str(not_list)])
    with pytest.raises(InputError, match="file not found"):
        load_records([str(tmp_path / "absent.json")])
    with pytest.raises(ConfigError):
        load_records([])


# -- files we did not write: the LLaVA-Pose release, crafted paths ------------------------------


def test_release_records_find_their_image_by_the_coco_name_fallback(
    tmp_path: Path,
    coco_mini: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the CLI, once run in this process, stops llava_pose's records at its own handler
    monkeypatch.setattr(logging.getLogger("llava_pose"), "propagate", True)
    root, ids = coco2014_root(tmp_path / "coco", coco_mini, 2)
    rows = release_records(ids)
    data = write_records(tmp_path / "generated_data_conversation.json", rows)
    with caplog.at_level("INFO", logger="llava_pose"):
        records, bad = load_records([str(data)], str(root))
    assert bad == [] and len(records) == 6
    # data/coco/train2014/<2017 name> -> ROOT/train2014/<2014 name>
    assert [r.image for r in records] == [
        str(root / "train2014" / f"COCO_train2014_{i:012d}.jpg") for i in ids for _ in range(3)
    ]
    # the same bare id on the three records of an image: made unique in file order, and said
    first, second = (str(i) for i in ids)
    assert [r.id for r in records] == [
        first,
        f"{first}#2",
        f"{first}#3",
        second,
        f"{second}#2",
        f"{second}#3",
    ]
    assert [r.index for r in records] == list(range(6))
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"{data}: 4 record(s) repeat an earlier record's id (first: [1], id '{first}')" in (
        warning
    )
    assert "6 image(s) found under their other COCO name or folder" in caplog.text


def test_the_2017_name_is_tried_in_the_folder_and_2017_files_are_found_as_given(
    tmp_path: Path, coco_mini: Path
) -> None:
    root = tmp_path / "coco"
    (root / "train2014").mkdir(parents=True)
    names = sorted(p.name for p in (coco_mini / "train2017").iterdir())[:2]
    # a train2014 folder of 2017-named files (what the release's paths suggest)
    (root / "train2014" / names[0]).symlink_to(coco_mini / "train2017" / names[0])
    rows = [
        {**release_records([int(Path(names[0]).stem)])[0], "id": "as-given"},
        {**release_records([int(Path(names[0]).stem)])[0], "id": "short"},
        {**release_records([int(Path(names[1]).stem)])[0], "id": "absent"},
    ]
    rows[1]["image"] = f"train2014/COCO_train2014_{names[0]}"  # a 2014 name, 2017 file
    records, bad = load_records([str(write_records(tmp_path / "d.json", rows))], str(root))
    assert bad == [] and [r.image for r in records[:2]] == [str(root / "train2014" / names[0])] * 2
    # not there under any name: the path as given, which the image check reports
    assert records[2].image == str(root / "data" / "coco" / "train2014" / names[1])


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("/etc/passwd", "absolute path '/etc/passwd'"),
        ("../outside/secret.jpg", "climbs out of the data root"),
        ("train2017/../../outside/secret.jpg", "climbs out of the data root"),
        ("C:\\Windows\\secret.jpg", "absolute path"),
    ],
)
def test_an_image_outside_the_image_root_stops_before_anything_is_read(
    tmp_path: Path, coco_mini: Path, image: str, problem: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(b"secret")
    rows = [*coco_records(coco_mini, 1), {**coco_records(coco_mini, 1)[0], "image": image}]
    rows[1]["id"] = "crafted"
    data = write_records(tmp_path / "data.json", rows)
    with pytest.raises(InputError) as e:
        load_records([str(data)], str(root))
    message = str(e.value)
    assert message.startswith(f"{data}: [1].image (id 'crafted'): ") and problem in message
    assert "\n" not in message


def test_a_symlinked_folder_inside_the_root_keeps_working(tmp_path: Path, coco_mini: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "images").symlink_to(coco_mini / "train2017")  # an image folder on another disk
    name = sorted(p.name for p in (coco_mini / "train2017").iterdir())[0]
    rows = [{**coco_records(coco_mini, 1)[0], "id": str(k)} for k in range(2)]
    rows[0]["image"] = f"images/{name}"
    rows[1]["image"] = f"images/../images/./{name}"  # a '..' that stays inside the root
    records, bad = load_records([str(write_records(tmp_path / "d.json", rows))], str(root))
    assert bad == [] and [r.image for r in records] == [str(root / "images" / name)] * 2
