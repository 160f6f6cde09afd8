"""The `scones` command line: one subcommand per step of the workflow, and `demo` for all of them. The app and
what the commands share are in common.py; each other module holds a group of commands, registered on import
in the order `scones --help` lists them."""

# ruff: noqa: I001  (the import order is the order of the commands in `scones --help`)
from scones.cli import model, environment, rollout, develop, workflow, solution, monitoring, console  # noqa: F401  (registers the commands)
from scones.cli.common import app

__all__ = ["app"]
