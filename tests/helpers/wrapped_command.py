"""The command line of the suite's environment wrappers (tests/localstack/run.py, tests/docker/run.py):
`python tests/<wrapper>/run.py -- COMMAND [ARG...]` brings the environment up, runs COMMAND in it, takes it
down again, and exits with COMMAND's status."""

from __future__ import annotations

import argparse
import signal


def wrapped_command(description: str, argv: list[str] | None) -> list[str]:
    """The command after `--`; a usage error without one. From here on SIGTERM (a CI time-out) unwinds like
    Ctrl-C, so the wrapper's clean-up runs on the way out."""
    parser = argparse.ArgumentParser(description=description, usage="%(prog)s -- COMMAND [ARG...]")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return command
