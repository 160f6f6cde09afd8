"""`python -m scones`: the same as the `scones` command."""

from scones.cli import app

app(prog_name="scones")
