"""The `swinface` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("swinface")

# name -> (help, add_arguments, run), filled by the @command decorator below.
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit status` as the subcommand `name`."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, arguments, run)
        return run

    return register


# ---------------------------------------------------------------- convert


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a checkpoint in the published layout (.pt) or a native file")
    p.add_argument("target", help="the native .safetensors file to write")
    p.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    p.add_argument("--name", default="", help="a name recorded in the file's metadata")
    p.add_argument(
        "--verify-threshold",
        type=float,
        default=None,
        help="cosine threshold for same/different decisions, stored with the weights",
    )


@command(
    "convert",
    "convert a published SwinFace checkpoint to the native safetensors format",
    _convert_args,
)
def _convert(args: argparse.Namespace) -> int:
    from swinface.weights import load_model_from_file, save_native

    model = load_model_from_file(args.source)
    meta = {}
    threshold = args.verify_threshold
    if threshold is None:
        threshold = model.weights_info.verify_threshold
    if threshold is not None:
        meta["verify_threshold"] = str(threshold)
    save_native(
        model, args.target, name=args.name or model.weights_info.name, half=args.half, metadata=meta
    )
    print(f"wrote {args.target}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    from swinface import __version__

    parser = argparse.ArgumentParser(
        prog="swinface",
        description="Face identity, expression, age and attributes with SwinFace.",
    )
    parser.add_argument("--version", action="version", version=f"swinface {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (tests call this in-process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from swinface.errors import SwinFaceError

    try:
        return int(args.run(args) or 0)
    except (SwinFaceError, ValueError, FileNotFoundError) as err:
        print(f"swinface {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
