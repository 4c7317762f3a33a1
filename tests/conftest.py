"""Shared fixtures: the COCO-MINI test slice in tests/data/coco-mini (read-only) and copies of it
in temp dirs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from tests.servers import OpenAIServer

# Real COCO 2017 images and their official annotations, cut down to the images the tests use
# (see its README.md: what is kept, why, and the licences). It ships with the repository, so a
# bare clone runs the suite.
COCO_MINI = Path(__file__).resolve().parent / "data" / "coco-mini"


def find_coco_mini() -> Path:
    """COCO-MINI: the slice in tests/data/coco-mini."""
    if not (COCO_MINI / "annotations" / "captions_val2017.json").is_file():
        pytest.fail(f"COCO-MINI is missing from the checkout: {COCO_MINI}")
    return COCO_MINI


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The read-only real COCO slice. Never write into it."""
    return find_coco_mini()


@pytest.fixture(scope="session")
def coco_copy(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """A writable copy of COCO-MINI's annotations and images, shared by the session.

    Tests that modify files must copy again (see `coco_annotations_copy`)."""
    dst = tmp_path_factory.mktemp("coco")
    shutil.copytree(coco_mini, dst, dirs_exist_ok=True, copy_function=shutil.copy)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.fixture
def coco_annotations_copy(tmp_path: Path, coco_mini: Path) -> Path:
    """A private copy of the annotations with images symlinked: free to corrupt."""
    (tmp_path / "annotations").mkdir()
    for f in (coco_mini / "annotations").iterdir():
        shutil.copy(f, tmp_path / "annotations" / f.name)
        (tmp_path / "annotations" / f.name).chmod(0o644)
    for split in ("train2017", "val2017"):
        (tmp_path / split).symlink_to(coco_mini / split)
    return tmp_path


# -- the CLI against a loopback provider -------------------------------------------------------

KEY = "sk-test-SECRET-123456"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """A loopback OpenAI server that wants KEY, which the environment holds."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIServer(latency=0.0, api_key=KEY) as s:
        yield s


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """`llava-pose generate` on COCO-MINI val2017 with the offline teacher: its output folder."""
    out = tmp_path_factory.mktemp("generated") / "out"
    assert cli("generate", "--coco", coco_mini, "--split", "val2017", "--out", out) == 0
    return out


def perf_script(name: str) -> ModuleType:
    """perf/NAME.py, imported as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "perf" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(*args: object) -> int:
    """`llava-pose ARGS...` in this process, quiet, each argument as a string."""
    from llava_pose.cli import main

    return main(["-q", *map(str, args)])


def one_line_error(capsys: pytest.CaptureFixture[str], rc: int, *needles: str) -> str:
    """The CLI failed with exit 2 and one `llava-pose: error:` line holding every needle."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llava-pose: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def generate_args(url: str, out: Path, *extra: object, images: int = 2) -> list[str]:
    """`generate` on COCO-MINI val2017 with GPT-4o at `url`."""
    return [
        "generate",
        "--coco",
        str(find_coco_mini()),
        "--split",
        "val2017",
        "--max-images",
        str(images),
        "--out",
        str(out),
        "--teacher",
        "openai:gpt-4o",
        "--base-url",
        url,
        *map(str, extra),
    ]
