"""The README's CLI reference is generated from the parser and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from llava_pose.cli.reference import END, START, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_cli_reference_is_current() -> None:
    text = README.read_text("utf-8")
    block = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert block == render(), "run: python -m llava_pose.cli.reference --update README.md"


def test_every_command_is_in_the_reference() -> None:
    reference = render()
    for command in (
        "generate",
        "prepare",
        "train",
        "export",
        "chat",
        "bench build",
        "bench answer",
        "bench judge",
        "bench report",
    ):
        assert f"#### `llava-pose {command}`" in reference
