"""The trl export through TRL's own vision-language path: its collator (what `SFTTrainer` feeds
a vision dataset through) makes exactly the tokens and labels `llava-pose train` makes, and
`SFTTrainer` trains on it with the exported chat template and assistant-only loss."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.train


def loaded(folder: Path, root: Path) -> Any:
    """The README's loader: paths joined to the COCO root, then decoded as images."""
    from datasets import Image, List, load_from_disk

    ds = load_from_disk(str(folder))
    ds = ds.map(lambda row: {"images": [os.path.join(root, p) for p in row["images"]]})
    return ds.cast_column("images", List(Image()))


def test_trl_collator_makes_the_tokens_llava_pose_train_makes(
    exported, generated: Path, coco_mini: Path
) -> None:
    pytest.importorskip("trl")
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from llava_pose.train.data import Encoder, count_image_tokens, load_records
    from llava_pose.train.model import build_tiny_processor

    out = exported("trl")
    ds = loaded(out, coco_mini)
    processor = build_tiny_processor()
    collator = DataCollatorForVisionLanguageModeling(
        processor=processor,
        assistant_only_loss=True,
        chat_template=(out / "llava_1_5_vicuna_v1.jinja").read_text(),
    )
    token_id, n_image = count_image_tokens(processor)
    encoder = Encoder(
        processor.tokenizer, image_token_id=token_id, num_image_tokens=n_image, max_length=4096
    )
    records, bad = load_records([str(generated / "llava_pose_all.json")], str(coco_mini))
    assert not bad and len(records) == ds.num_rows
    for start in range(0, ds.num_rows, 8):
        rows = [ds[i] for i in range(start, min(start + 8, ds.num_rows))]
        batch = collator(rows)
        assert batch["pixel_values"].shape[0] == len(rows)  # every image was opened
        for k, row in enumerate(rows):
            ours = encoder.encode(records[start + k])
            n = int(batch["attention_mask"][k].sum())
            assert row["id"] == records[start + k].id
            assert batch["input_ids"][k, :n].tolist() == ours.input_ids
            assert batch["labels"][k, :n].tolist() == ours.labels  # the answers and their </s>
            assert (batch["labels"][k, n:] == -100).all()


def test_the_image_token_kept_in_the_text_fails_in_trl(exported, coco_mini: Path) -> None:
    """Why the trl format drops <image>: the hf copy keeps it, and TRL's collator then sees
    two image places for one image."""
    pytest.importorskip("trl")
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from llava_pose.train.model import build_tiny_processor

    rows = [loaded(exported("hf"), coco_mini)[0]]
    collator = DataCollatorForVisionLanguageModeling(processor=build_tiny_processor())
    with pytest.raises(ValueError, match="Found total 2 <image> tokens and 1 images"):
        collator(rows)
    trl_rows = [loaded(exported("trl"), coco_mini)[0]]
    assert collator(trl_rows)["input_ids"].shape[0] == 1


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")  # TRL's own config
def test_sft_trainer_trains_on_the_export(exported, coco_mini: Path, tmp_path: Path) -> None:
    """The README's recipe on the tiny model: SFTTrainer, the exported chat template given as
    chat_template_path, assistant-only loss; two optimizer steps."""
    pytest.importorskip("trl")
    from trl import SFTConfig, SFTTrainer

    from llava_pose.train.model import build_tiny

    out = exported("trl")
    model, processor = build_tiny()
    trainer = SFTTrainer(
        model=model,
        processing_class=processor,
        train_dataset=loaded(out, coco_mini),
        args=SFTConfig(
            output_dir=str(tmp_path / "run"),
            chat_template_path=str(out / "llava_1_5_vicuna_v1.jinja"),
            assistant_only_loss=True,
            max_length=None,
            max_steps=2,
            per_device_train_batch_size=2,
            learning_rate=1e-3,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            dataloader_num_workers=0,
        ),
    )
    assert trainer.chat_template is None  # ours has the markers: TRL keeps it as given
    assert "{% generation %}" in processor.chat_template
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
