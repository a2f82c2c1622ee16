"""The `pytest-distill` command: tools around runs (pytest itself runs them)."""

from __future__ import annotations

import argparse
import sys

from pytest_distill.cli import merge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-distill", description="tools for pytest-distill runs")
    commands = parser.add_subparsers(dest="command", required=True)
    merge.add_parser(commands)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
