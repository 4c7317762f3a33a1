"""The `llava-pose` command. Each command group is a thin module here: it declares its
arguments from the stage's config dataclass and calls the stage. Errors meant for the user
print as one line (no traceback) and set the exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__, lifetime, lock
from ..config import add_options
from ..errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    LlavaPoseError,
    environment_error,
    forget_secrets,
    redact,
)
from ..progress import LineHandler, end_progress_line

# Command modules, by the commands each registers (`register(subparsers)`). A command line
# naming one builds only its parser (importing the others' options costs ~0.15 s of a start
# that the first teacher call waits for); help and unknown commands build them all. They
# import their stage lazily, so `llava-pose --help` never loads torch.
COMMANDS = {
    "generate": "llava_pose.cli.generate",
    "prepare": "llava_pose.cli.prepare",
    "bench": "llava_pose.cli.bench",
    "train": "llava_pose.cli.train",
    "export": "llava_pose.cli.train",
    "chat": "llava_pose.cli.chat",
    "poseqa": "llava_pose.cli.poseqa",
    "verify": "llava_pose.cli.verify",
    "batch": "llava_pose.cli.batch",
    "overlay": "llava_pose.cli.overlay",
    "view": "llava_pose.cli.view",
}

log = logging.getLogger("llava_pose")


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _add_verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/-q, accepted before the command and after it alike (defaults only on the top
    parser, so a subcommand's flag is not reset by its own default)."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log more (debug messages)"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="log only warnings and errors"
    )


def add_command(
    subparsers: Any,
    name: str,
    config_cls: type | None,
    run: Callable[[Any], int | None],
    *,
    help: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """Add a subcommand whose options come from `config_cls` and whose action is `run(config)`."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbosity(parser)
    if config_cls is not None:
        add_options(parser, config_cls)
    parser.set_defaults(_run=run, _config_cls=config_cls)
    return parser


def add_group(subparsers: Any, name: str, *, help: str, description: str) -> Any:
    """A command with steps (``bench build``, ``poseqa score``): its parser prints help when
    given no step. Returns the subparsers its steps are added to with `add_command`."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"examples:\n  llava-pose {name} STEP --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbosity(parser)
    parser.set_defaults(_run=lambda _: parser.print_help() or 2, _config_cls=None)
    return parser.add_subparsers(title="steps", metavar="STEP")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of `command` (one of `COMMANDS`)."""
    parser = argparse.ArgumentParser(
        prog="llava-pose",
        description="Keypoint-integrated instruction data, fine-tuning and the E-HPAUB benchmark (LLaVA-Pose).",
        epilog="examples:\n"
        "  llava-pose generate --out out/          # offline, bundled sample, built-in teacher\n"
        "  llava-pose generate --coco /data/coco --split train2017 --teacher openai:gpt-4o --out out/\n"
        "  llava-pose <command> --help             # options and examples of one command",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llava-pose {__version__}")
    _add_verbosity(parser, top=True)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for module in dict.fromkeys(modules):
        importlib.import_module(module).register(subparsers)
    return parser


def named_command(argv: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option (the top
    level's options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def entry() -> None:
    """The console script and ``python -m llava_pose``: `main`, then out without tearing down
    the heap. Outputs are written and closed by then; the streams are flushed here."""
    lifetime.KEEP = []  # generate leaves its big inputs for the exit to drop
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(named_command(argv))
    args = parser.parse_args(argv)
    handler = LineHandler()
    handler.setFormatter(_RedactingFormatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        from ..config import load_config

        options = {
            k: v
            for k, v in vars(args).items()
            if not k.startswith("_") and k not in ("verbose", "quiet")
        }
        config = load_config(args._config_cls, options) if args._config_cls else args
        with lock.scope():
            return int(run(config) or 0)
    except LlavaPoseError as e:
        end_progress_line()
        print(f"llava-pose: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(
            "\nllava-pose: interrupted. Every finished call is in the cache: rerun the same command to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: keep the traceback for the report, never a secret in it
        end_progress_line()
        line = environment_error(e) if isinstance(e, OSError) else None
        if line is not None:  # a read-only mount, a full disk: the machine's, not a bug
            print(f"llava-pose: error: {redact(line)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        sys.stderr.write(redact(traceback.format_exc()))
        print(
            "llava-pose: internal error (above); please report it. Finished calls are in the "
            "cache: rerunning resumes.",
            file=sys.stderr,
        )
        return 1
    finally:
        forget_secrets()


if __name__ == "__main__":
    sys.exit(main())
