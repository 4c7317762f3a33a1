"""One dataclass per command; YAML config file plus command-line overrides.

Every field is declared once with `option(...)`: its default, its help text, and how it
appears on the command line. `add_options` turns a dataclass into argparse arguments and
`load_config` merges defaults < YAML file (``--config``) < explicit flags, then validates types.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from .errors import ConfigError

C = TypeVar("C")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    short: str | None = None,
    positional: bool = False,
    nargs: str | None = None,
    choices: typing.Sequence[Any] | None = None,
    metavar: str | None = None,
    cli: bool = True,
    at_least: float | None = None,
    more_than: float | None = None,
    at_most: float | None = None,
    path: str | None = None,
    hint: str | None = None,
) -> Any:
    """Declare a config field: default, help, its command-line spelling, and the values it
    takes (`choices`, each item for a list; numeric bounds; `path` ``"dir"`` or ``"file"``
    for an output, so ``--out result.json`` is not made a folder nor ``--out answers/`` a
    file). Values are checked in `load_config`, from the command line and the YAML file
    alike, before any work. `hint` is added to argparse's "invalid value" line, for a flag
    that a newcomer is likely to give the wrong kind of value."""
    meta = {
        "path": path,
        "at_least": at_least,
        "more_than": more_than,
        "at_most": at_most,
        "help": help,
        "flag": flag,
        "short": short,
        "positional": positional,
        "nargs": nargs,
        "choices": choices,
        "metavar": metavar,
        "cli": cli,
        "hint": hint,
    }
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple)


def _scalar(tp: Any) -> Any:
    if _is_list(tp):
        return typing.get_args(tp)[0]
    return tp


def add_options(parser: argparse.ArgumentParser, cls: type, *, config_flag: bool = True) -> None:
    """Add one argument per field of dataclass `cls`; defaults stay out (SUPPRESS) so that
    `load_config` can tell which flags the user actually gave."""
    hints = typing.get_type_hints(cls)
    if config_flag:
        parser.add_argument(
            "--config",
            metavar="FILE.yaml",
            default=argparse.SUPPRESS,
            help="YAML file of options (keys are the long option names); flags given here override it",
        )
    groups = _groups(parser, cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        target = groups.get(f.name, parser)
        tp, _ = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        help_text = meta.get("help", "")
        if meta.get("choices") and _is_list(tp):
            help_text += f" (from: {', '.join(map(str, meta['choices']))})"
        if default not in (None, "", [], ()) and tp is not bool:
            shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
            help_text += f" (default: {shown})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if meta.get("positional"):
            names = [f.name]
            kwargs["nargs"] = meta.get("nargs") or ("?" if default is not None else None)
            if kwargs["nargs"] is None:
                del kwargs["nargs"]
        else:
            names = [meta.get("flag") or "--" + f.name.replace("_", "-")]
            if meta.get("short"):
                names.insert(0, meta["short"])
            kwargs["dest"] = f.name
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if _is_list(tp):
                if meta.get("nargs"):
                    kwargs["nargs"] = meta["nargs"]
                else:
                    kwargs["type"] = _comma_list(_scalar(tp))
            else:
                kwargs["type"] = _scalar(tp) if _scalar(tp) in (int, float) else str
                if meta.get("hint") and kwargs["type"] is not str:
                    kwargs["type"] = _hinted(kwargs["type"], meta["hint"])
            if meta.get("choices") and not _is_list(tp):
                kwargs["choices"] = meta["choices"]
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        target.add_argument(*names, **kwargs)


def _groups(parser: argparse.ArgumentParser, cls: type) -> dict[str, Any]:
    """Field name -> argument group of the dataclass that declares it, the command's own first,
    titled by that class's docstring (e.g. "Which COCO images a command reads")."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        own = [n for n in inspect.get_annotations(klass) if n not in out]
        if not dataclasses.is_dataclass(klass) or not own:
            continue
        doc = (klass.__doc__ or "").strip()
        if not doc or doc.startswith(f"{klass.__name__}("):  # dataclass's generated docstring
            out.update(dict.fromkeys(own, parser))
            continue
        group = parser.add_argument_group(doc.splitlines()[0].split(". ")[0].rstrip("."))
        out.update(dict.fromkeys(own, group))
    return out


def _hinted(convert: Any, hint: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid {convert.__name__} value: {text!r}; {hint}"
            ) from None

    parse.__name__ = convert.__name__
    return parse


def _comma_list(item: Any) -> Any:
    def parse(text: str) -> list[Any]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return [item(p) for p in parts] if item in (int, float) else parts

    parse.__name__ = "comma-separated list"
    return parse


def load_config(cls: type[C], args: argparse.Namespace | dict[str, Any] | None = None) -> C:
    """Build `cls` from defaults, then ``--config`` YAML, then explicit command-line values."""
    given = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
    values: dict[str, Any] = {}
    config_file = given.pop("config", None)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if config_file:
        values.update(_read_yaml(config_file, names))
    values.update({k: v for k, v in given.items() if k in names})
    hints = typing.get_type_hints(cls)
    converted: dict[str, Any] = {}
    for key, value in values.items():
        try:
            converted[key] = msgspec.convert(value, hints[key], strict=False)
        except msgspec.ValidationError as e:
            where = (
                f"{config_file}: {key}"
                if config_file and key not in given
                else f"--{key.replace('_', '-')}"
            )
            raise ConfigError(f"{where}: {e}") from None
        field = next(f for f in dataclasses.fields(cls) if f.name == key)  # type: ignore[arg-type]
        problem = _value_problem(converted[key], field.metadata)
        if problem:
            where = (
                f"{config_file}: {key}"
                if config_file and key not in given
                else f"--{key.replace('_', '-')}"
            )
            raise ConfigError(f"{where}: {problem}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        if required and f.name not in converted:
            name = f.name if f.metadata.get("positional") else "--" + f.name.replace("_", "-")
            raise ConfigError(f"{name} is required (see --help)")
    return cls(**converted)


# What an output folder's name must not end with: the name of a file.
_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".md", ".png", ".jpg", ".yaml", ".txt", ".sqlite")


def path_problem(value: str, kind: str) -> str | None:
    """Why `value` cannot be the output `kind` (``dir`` or ``file``) names, or None; an
    existing path of the other kind, or a name that says the other kind."""
    target = Path(value)
    if kind == "dir":
        if target.is_file() or target.suffix.lower() in _FILE_SUFFIXES:
            what = "is a file" if target.is_file() else "names a file"
            return f"{value} {what}; this command writes a folder of files there (e.g. out/)"
    elif value.endswith(("/", "\\")) or target.is_dir():
        return (
            f"{value} is a folder; this command writes one file: name it, e.g. "
            f"{value.rstrip('/')}/NAME{Path(value.rstrip('/')).suffix or ''}"
        )
    return None


def _value_problem(value: Any, meta: Any) -> str | None:
    """Why `value` is not one the field takes, or None. Pure but for `path`'s look at the
    disk."""
    if value is None:
        return None
    if meta.get("path") and isinstance(value, str) and value:
        problem = path_problem(value, meta["path"])
        if problem:
            return problem
    items = value if isinstance(value, list | tuple) else [value]
    choices = meta.get("choices")
    if choices:
        bad = [v for v in items if v not in choices]
        if bad:
            return f"{bad[0]!r} is not one of {', '.join(map(str, choices))}"
        if isinstance(value, list | tuple) and not value:
            return f"give at least one of {', '.join(map(str, choices))}"
    low, high = meta.get("at_least"), meta.get("at_most")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if low is not None and high is not None and not low <= v <= high:
            return f"must be {low:g} to {high:g}, got {v:g}"
        if meta.get("at_least") is not None and v < meta["at_least"]:
            return f"must be at least {meta['at_least']:g}, got {v:g}"
        if meta.get("more_than") is not None and v <= meta["more_than"]:
            return f"must be more than {meta['more_than']:g}, got {v:g}"
        if meta.get("at_most") is not None and v > meta["at_most"]:
            return f"must be at most {meta['at_most']:g}, got {v:g}"
    return None


def _read_yaml(path: str, names: set[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise ConfigError(f"{path}: {key}: unknown option (see --help for the list)")
        out[name] = value
    return out
