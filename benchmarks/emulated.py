"""What the benchmarks that deploy a stack share with the test suites: pointing their own process at the
emulator they measure (tests/helpers/aws_environment.py; benchmarks are entry points, so they may). Importing
this puts the repository root on the path of the benchmark script that does (they run as scripts)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.aws_environment import aws_environment_for

__all__ = ["aws_environment_for"]
