"""One dataclass per command: defaults < YAML file < flags, errors that name the key."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from llava_pose.config import add_options, load_config, option
from llava_pose.errors import ConfigError


@dataclass
class Demo:
    """Demo options."""

    out: str = option("out", "output folder")
    concurrency: int = option(16, "requests in flight")
    tasks: list[str] = option(["a", "b"], "task list")
    fewshot: bool = option(False, "use examples")
    max_cost: float | None = option(None, "budget")


def parse(argv: list[str]) -> Demo:
    parser = argparse.ArgumentParser()
    add_options(parser, Demo)
    return load_config(Demo, parser.parse_args(argv))


def test_defaults_then_yaml_then_flags(tmp_path) -> None:
    assert parse([]) == Demo()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("concurrency: 64\nmax-cost: 12.5\ntasks: [b]\nfewshot: true\n")
    assert parse(["--config", str(cfg)]) == Demo(
        concurrency=64, max_cost=12.5, tasks=["b"], fewshot=True
    )
    got = parse(["--config", str(cfg), "--concurrency", "8", "--tasks", "a,b", "--no-fewshot"])
    assert got == Demo(concurrency=8, max_cost=12.5, tasks=["a", "b"], fewshot=False)


def test_yaml_errors_name_the_file_and_key(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("concurency: 64\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: concurency: unknown option"):
        parse(["--config", str(cfg)])
    cfg.write_text("concurrency: lots\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: concurrency: Expected `int`"):
        parse(["--config", str(cfg)])
    with pytest.raises(ConfigError, match="config file not found"):
        parse(["--config", str(tmp_path / "missing.yaml")])


def test_list_defaults_are_not_shared() -> None:
    a, b = Demo(), Demo()
    a.tasks.append("c")
    assert b.tasks == ["a", "b"]


@dataclass
class Needs:
    """Options with a required one."""

    bench: str = option(help="benchmark folder")
    out: str = option("o", "output")


def test_a_missing_required_option_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^--bench is required"):
        load_config(Needs, {"out": "x"})
    assert load_config(Needs, {"bench": "b"}) == Needs(bench="b", out="o")
