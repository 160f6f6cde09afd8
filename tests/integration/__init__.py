"""Integration tests: the workflow on a real emulator (see conftest.py)."""
