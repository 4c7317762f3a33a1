"""`llava-pose export`: our data for other trainers, or a LoRA run as a plain checkpoint.

The LLaVA JSON that `generate` writes trains elsewhere with small changes, made here once:

* ``llamafactory``: the records as they are (LLaMA-Factory 0.9.5 reads LLaVA JSON as
  ``sharegpt`` with columns ``messages=conversations`` and ``images=image``; ``media_dir`` is the
  COCO root) and the ``dataset_info.json`` entry that says so.
* ``hf``: a `datasets` copy (``save_to_disk``) with ``messages`` (role/content strings, ``<image>``
  kept where the image goes) and ``images`` columns.
* ``trl``: the same copy in TRL's vision-language form: content parts, an image part first in
  the first user turn and no literal ``<image>`` (TRL's collator fails on it), plus LLaVA-1.5's
  training prompt as a chat template with ``{% generation %}`` markers, so that
  ``assistant_only_loss`` trains on the answers only.
* ``merged``: a LoRA run merged into a plain llava-hf checkpoint (`train.model.export_merged`).

Images are paths relative to the COCO root, never embedded: 200k records would otherwise carry
COCO's images three times over. Every format gets a dataset card (``README.md``) whose facts come
from the generate run's ``stats.json`` (split, teacher, prompt sha256, filters and their counts)
and, with ``--verify``, from `llava-pose verify`'s ``summary.json``.

Records are read and checked as `llava-pose train` reads them (`train.data.load_records`): a
dataset another trainer would choke on stops here, with the record named.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePath
from typing import Any

from . import __version__
from .config import option
from .errors import ConfigError, InputError
from .filters import FILTERS
from .io import read_json

FORMATS = ("llamafactory", "trl", "hf", "merged")
DATASET_FORMATS = FORMATS[:3]
MERGED_FILE = "llava_pose_all.json"  # what a generate output folder is exported from
STATS_FILE = "stats.json"
CARD_FILE = "README.md"
TEMPLATE_FILE = "llava_1_5_vicuna_v1.jinja"
LF_INFO_FILE = "dataset_info.json"
ROLES = {"human": "user", "gpt": "assistant"}  # LLaVA's speakers -> chat roles
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TITLES = {
    "llamafactory": "a LLaMA-Factory dataset (sharegpt)",
    "hf": "a Hugging Face `datasets` copy",
    "trl": "a TRL `SFTTrainer` dataset",
}


@dataclass
class ExportConfig:
    """Export data for another trainer, or merge a LoRA run into a plain checkpoint."""

    source: str = option(
        help="a generate output folder or a LLaVA JSON file (dataset formats), or a LoRA run "
        "folder or one of its checkpoint-N folders (merged)",
        positional=True,
    )
    format: str | None = option(
        None,
        "llamafactory, trl, hf (data), or merged (a LoRA run); default: merged for a run, and "
        "data must name its format",
        choices=FORMATS,
    )
    out: str | None = option(
        None,
        "folder to write (new or empty; required)",
        flag="--output",
        short="--out",
        metavar="DIR",
    )
    image_root: str | None = option(
        None,
        "COCO root the records' images are relative to: every image must be found there (COCO "
        "names fall back as in train); it fills the recipes in the dataset card",
        metavar="DIR",
    )
    verify: str | None = option(
        None,
        "output folder of `llava-pose verify` on this data: its summary.json goes into the card",
        metavar="DIR",
    )
    name: str = option(
        "llava_pose", "dataset name: the dataset_info.json key, the data file's and card's name"
    )
    skip_bad: bool = option(
        False,
        "leave out the records `train` would reject instead of stopping (counted in the card)",
    )
    dtype: str = option(
        "auto", "merged: the weights' dtype, bf16, fp16, fp32 (auto: the base model's)"
    )


# -- records -> rows (pure) ---------------------------------------------------------------------


def llamafactory_row(rid: str, image: str | None, turns: tuple[tuple[str, str], ...]) -> dict:
    """A LLaVA record as LLaMA-Factory's sharegpt reads it: our own format, as `train` reads it
    (``<image>`` leading its turn, as LLaVA's preprocessing puts it)."""
    row: dict[str, Any] = {"id": rid}
    if image is not None:
        row["image"] = image
    row["conversations"] = [{"from": who, "value": text} for who, text in turns]
    return row


def hf_row(rid: str, image: str | None, turns: tuple[tuple[str, str], ...]) -> dict:
    """Role/content messages with string content; ``<image>`` stays where the image goes."""
    return {
        "id": rid,
        "messages": [{"role": ROLES[who], "content": text} for who, text in turns],
        "images": [] if image is None else [image],
    }


def trl_row(rid: str, image: str | None, turns: tuple[tuple[str, str], ...]) -> dict:
    """TRL's vision-language messages, as training builds them (`train.data.chat_messages`):
    the image part first in the first user turn, the literal ``<image>`` gone from the text."""
    from .train.data import chat_messages

    messages = chat_messages(turns, has_image=image is not None)
    return {"id": rid, "messages": messages, "images": [] if image is None else [image]}


ROW_MAKERS = {"llamafactory": llamafactory_row, "hf": hf_row, "trl": trl_row}


def dataset_info(name: str, file_name: str) -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json``: one entry, `name`, reading `file_name`."""
    entry = json.loads(_data("dataset_info.json").replace("__FILE__", file_name))
    return {name: entry}


def hf_features(fmt: str) -> Any:
    """The columns of the `datasets` copy, stated rather than inferred (an image part has no
    text: its ``text`` is null)."""
    from datasets import Features, List, Value

    content: Any = Value("string")
    if fmt == "trl":
        content = List({"type": Value("string"), "text": Value("string")})
    return Features(
        {
            "id": Value("string"),
            "messages": List({"role": Value("string"), "content": content}),
            "images": List(Value("string")),
        }
    )


# -- the dataset card (pure) --------------------------------------------------------------------


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def provenance(stats: dict[str, Any] | None, data_file: str) -> str:
    """The generate run behind the data, from its ``stats.json``."""
    if stats is None:
        return (
            f"No `{STATS_FILE}` beside `{data_file}`: not a `llava-pose generate` output, so its "
            "teacher, prompts and filters are not known here."
        )
    samples = stats.get("samples", {})
    fewshot = " with few-shot examples" if stats.get("fewshot") else ""
    if stats.get("prompt_sha256"):
        digest = f"`{stats['prompt_sha256']}`"
    elif "prompt_sha256" in stats:
        digest = "none (the teacher reads no prompt)"
    else:
        digest = "not recorded (stats.json of an older llava-pose)"
    rows: list[tuple[str, Any]] = [
        ("source", f"`{stats.get('source')}`, split `{stats.get('split')}`"),
        ("images with people", stats.get("images")),
        ("teacher", f"`{stats.get('teacher')}`"),
        ("prompt format", f"{stats.get('format')}{fewshot}"),
        ("prompt sha256", digest),
        ("seed", stats.get("seed")),
        ("records by task", ", ".join(f"{t} {n}" for t, n in samples.items() if t != "all")),
        ("llava-pose", stats.get("llava_pose_version")),
    ]
    text = f"The `llava-pose generate` run whose `{data_file}` this is:\n\n" + _table(rows)
    if not stats.get("complete", True):
        text += (
            "\n\nThe run was **not complete** (failed or unbudgeted requests): some images lack "
            "some tasks."
        )
    return text


def filters_table(stats: dict[str, Any] | None, bad: int) -> str:
    """Each filter and what it dropped; the pose check reads "off" when it did not run."""
    if stats is None:
        rows: list[tuple[str, Any]] = []
    else:
        dropped = stats.get("filtered", {})
        checked = stats.get("pose_claims", {}).get("checked", True)
        names = (*FILTERS, *sorted(set(dropped) - set(FILTERS)))
        off = {"contradicts_pose"} if not checked else set()
        rows = [(f"`{n}`", "off" if n in off else dropped.get(n, 0)) for n in names]
    rows.append(("left out by export `--skip-bad`", bad))
    return _table(rows, ("filter", "dropped"))


def verify_text(summary: dict[str, Any] | None, records: int) -> str:
    """`llava-pose verify`'s ``summary.json``: its counts, and whether it saw these records."""
    if summary is None:
        return "Not run for this export (`llava-pose verify --data FILE --out DIR`, then `--verify DIR`)."
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            if isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            else:
                continue
        shown = f"{value:.1%}" if key.endswith("_share") and isinstance(value, float) else value
        rows.append((key.replace("_", " "), shown))
    text = _table(rows)
    seen = summary.get("records")
    if isinstance(seen, int) and seen != records:
        text += f"\n\n`verify` read {seen} records; this export has {records}."
    return text


def render_card(
    fmt: str,
    name: str,
    *,
    stats: dict[str, Any] | None,
    summary: dict[str, Any] | None,
    data_file: str,
    counts: dict[str, int],
    folder: str,
    image_root: str | None,
) -> str:
    """The dataset card (``README.md``): package data filled with the run's facts."""
    usage = (
        _data(f"usage_{fmt}.md")
        .replace("__DIR__", folder)
        .replace("__NAME__", name)
        .replace("__FILE__", f"{name}.json")
        .replace("__TEMPLATE__", TEMPLATE_FILE)
        .replace("__IMAGE_ROOT__", image_root or "/data/coco")
    )
    teacher = f"`{stats['teacher']}`" if stats and stats.get("teacher") else "(not recorded)"
    return (
        _data("card.md")
        .replace("__NAME__", name)
        .replace("__VERSION__", __version__)
        .replace("__FORMAT_TITLE__", _TITLES[fmt])
        .replace("__RECORDS__", str(counts["records"]))
        .replace("__IMAGES__", str(counts["images"]))
        .replace("__TURNS__", str(counts["pairs"]))
        .replace("__PROVENANCE__", provenance(stats, data_file))
        .replace("__FILTERS__", filters_table(stats, counts["bad"]))
        .replace("__VERIFY__", verify_text(summary, counts["records"]))
        .replace("__USAGE__", usage)
        .replace("__TEACHER__", teacher)
    )


def _data(name: str) -> str:
    return resources.files("llava_pose").joinpath("data/export", name).read_text("utf-8")


def chat_template() -> str:
    """LLaVA-1.5's training prompt with ``{% generation %}`` markers (the trl format's)."""
    return _data(TEMPLATE_FILE)


# -- the command --------------------------------------------------------------------------------


def _is_data(source: Path) -> bool:
    return source.suffix == ".json" or (source / MERGED_FILE).is_file()


def run_export(cfg: ExportConfig) -> int:
    """Dispatch on --format (or on what SOURCE is): a LoRA merge or a dataset export."""
    source = Path(cfg.source)
    fmt = cfg.format
    if fmt is None:
        if _is_data(source):
            raise ConfigError(
                f"{source}: is data; give --format llamafactory, trl or hf (they differ in "
                "where the image goes: see `llava-pose export --help`)"
            )
        fmt = "merged"
    if fmt == "merged":
        return _merged(cfg)
    return export_dataset(cfg, fmt)


def _merged(cfg: ExportConfig) -> int:
    from .extras import require_train

    given = [f for f in ("image_root", "verify") if getattr(cfg, f) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag}: only for the dataset formats (llamafactory, trl, hf)")
    require_train("llava-pose export")
    if not cfg.out:
        raise ConfigError("export: give --output DIR, the folder for the merged model")
    import torch

    from .train.model import export_merged
    from .vlm.load import resolve_dtype

    dtype = None if cfg.dtype == "auto" else resolve_dtype(cfg.dtype, torch.device("cpu"))
    print(export_merged(cfg.source, cfg.out, dtype))
    return 0


def _data_file(source: Path) -> Path:
    if source.is_dir():
        if not (source / MERGED_FILE).is_file():
            raise InputError(
                source, f"no {MERGED_FILE} here: give a generate output folder or a LLaVA JSON file"
            )
        return source / MERGED_FILE
    if not source.is_file():
        raise InputError(source, "not found (a generate output folder or a LLaVA JSON file)")
    return source


def _check_out(cfg: ExportConfig) -> Path:
    if not cfg.out:
        raise ConfigError("export: give --out DIR, the folder to write")
    if not _NAME.fullmatch(cfg.name):
        raise ConfigError(f"--name {cfg.name!r}: use letters, digits, _, . and - (it names files)")
    if cfg.dtype != "auto":
        raise ConfigError("--dtype: only for --format merged")
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not empty; choose a new folder")
    return out


def _read_summary(folder: str) -> dict[str, Any]:
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise InputError(path, "not found: give the --out folder of `llava-pose verify`")
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise InputError(path, "expected a JSON object (llava-pose verify's summary)")
    return summary


def _require_datasets(fmt: str) -> None:
    from .extras import _installed

    if not _installed("datasets"):
        raise ConfigError(
            f"export --format {fmt} needs the `datasets` package: pip install datasets "
            '(or pip install -e ".[train]")'
        )


def export_dataset(cfg: ExportConfig, fmt: str) -> int:
    """Check every record as `train` would, convert, and write the format's files and card into
    a hidden sibling folder that becomes --out only when complete."""
    from .lock import hold
    from .train.data import Bad, load_records

    out = _check_out(cfg)
    data_file = _data_file(Path(cfg.source))
    if fmt != "llamafactory":
        _require_datasets(fmt)
    summary = _read_summary(cfg.verify) if cfg.verify else None
    stats_path = data_file.parent / STATS_FILE
    stats = read_json(stats_path) if stats_path.is_file() else None
    if stats is not None and not isinstance(stats, dict):
        raise InputError(stats_path, "expected a JSON object (generate's stats)")
    hold(out, "export")

    root = Path(cfg.image_root) if cfg.image_root else data_file.resolve().parent
    records, bad = load_records([str(data_file)], cfg.image_root)
    total = len(records) + len(bad)
    if cfg.image_root:
        missing = {p for p in {r.image for r in records if r.image} if not os.path.isfile(p)}
        bad += [
            Bad(r.id, r.source, f"image not found: {r.image}", r.index)
            for r in records
            if r.image in missing
        ]
        records = [r for r in records if r.image not in missing]
    bad.sort(key=lambda b: b.index)
    if bad and not cfg.skip_bad:
        first = bad[0]
        raise InputError(
            data_file,
            f"{len(bad)} of {total} records are bad (first: [{first.index}] (id {first.id!r}): "
            f"{first.reason}); fix them or pass --skip-bad",
        )
    make = ROW_MAKERS[fmt]
    rows = [make(r.id, _relative(r.image, root), r.turns) for r in records]
    counts = {
        "records": len(rows),
        "images": len({r.image for r in records if r.image}),
        "pairs": sum(1 for r in records for who, _ in r.turns if who == "gpt"),
        "bad": len(bad),
    }
    card = render_card(
        fmt,
        cfg.name,
        stats=stats,
        summary=summary,
        data_file=data_file.name,
        counts=counts,
        folder=str(out.resolve()),
        image_root=str(Path(cfg.image_root).resolve()) if cfg.image_root else None,
    )
    _write(out, fmt, cfg.name, rows, card)
    print(f"wrote {counts['records']} records ({counts['images']} images) as {fmt} to {out}")
    if bad:
        print(f"left out {len(bad)} bad records (--skip-bad), first {bad[0]}")
    return 0


def _relative(image: str | None, root: Path) -> str | None:
    """A record's image as found under `root` (`load_records` joined them), relative again."""
    return None if image is None else PurePath(image).relative_to(root).as_posix()


def _write(out: Path, fmt: str, name: str, rows: list[dict[str, Any]], card: str) -> None:
    from .io import write_json

    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if fmt == "llamafactory":
            tmp.mkdir(parents=True)
            write_json(tmp / f"{name}.json", rows, indent=1)
            write_json(tmp / LF_INFO_FILE, dataset_info(name, f"{name}.json"))
        else:
            import datasets
            from datasets import Dataset

            datasets.disable_progress_bars()
            Dataset.from_list(rows, features=hf_features(fmt)).save_to_disk(str(tmp))
            if fmt == "trl":
                (tmp / TEMPLATE_FILE).write_text(chat_template(), encoding="utf-8")
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
