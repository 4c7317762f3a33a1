"""Plain helpers of the view tests: configs, built sites, and reading shards back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llava_pose.config import load_config
from llava_pose.view.config import ViewConfig
from llava_pose.view.model import SiteData
from llava_pose.view.run import build
from llava_pose.view.site import served_src, write_site


def config(folder: Path, **options: Any) -> ViewConfig:
    return load_config(ViewConfig, {"folder": str(folder), **options})


def built(folder: Path, **options: Any) -> tuple[SiteData, Path | None]:
    return build(config(folder, **options))


def site(folder: Path, out: Path, **options: Any) -> tuple[SiteData, Path | None, set[str]]:
    """The served site of `folder` written to `out`: data, image root, images it may serve."""
    data, root = built(folder, **options)
    src, served = served_src(root)
    write_site(data, out, src)
    return data, root, served


def shard(path: Path) -> tuple[str, Any]:
    """(name, data) of a ``LPV.put(name, data);`` file."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("LPV.put(") and text.endswith(");\n"), text[:80]
    name, data = json.loads("[" + text[len("LPV.put(") : -3] + "]")
    return name, data
