"""Run in LLaMA-Factory's own environment (.venv-lf): load an exported dataset with
LLaMA-Factory's data loader, as `llamafactory-cli train` does, and print what it made.

argv: DATASET_DIR NAME MEDIA_DIR WORK_DIR. Writes WORK_DIR/rows.json: the rows LLaMA-Factory
made (image paths, decoded input, decoded labels, image tokens); LLaMA-Factory prints its own
example on stdout."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    dataset_dir, name, media_dir, work = sys.argv[1:5]
    os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "datasets-cache")
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from transformers import AutoProcessor

    from llava_pose.train.model import build_tiny_processor

    model_dir = os.path.join(work, "tiny")
    build_tiny_processor().save_pretrained(model_dir)  # a llava-hf processor, built offline
    model_args, data_args, training_args, _, _ = get_train_args(
        {
            "model_name_or_path": model_dir,
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "lora",
            "dataset_dir": dataset_dir,
            "dataset": name,
            "media_dir": media_dir,
            "template": "llava",
            "cutoff_len": 4096,
            "overwrite_cache": True,
            "output_dir": os.path.join(work, "run"),
            "report_to": "none",
        }
    )
    processor = AutoProcessor.from_pretrained(model_dir)
    tokenizer = processor.tokenizer
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(
        template,
        model_args,
        data_args,
        training_args,
        "sft",
        tokenizer=tokenizer,
        processor=processor,
    )
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    rows = []
    for row in module["train_dataset"]:
        ids, labels = row["input_ids"], row["labels"]
        rows.append(
            {
                "images": row["images"],
                "input": tokenizer.decode([t for t in ids if t != image_id]),
                "labels": tokenizer.decode([t for t in labels if t >= 0]),
                "image_tokens": ids.count(image_id),
            }
        )
    with open(os.path.join(work, "rows.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    main()
