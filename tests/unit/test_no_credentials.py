"""No credentials in the repository: every git-tracked file is searched for AWS access key IDs,
secret-key-looking assignments and private keys. No network."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# An assignment to a secret-looking name of a value long enough to be a real secret (AWS secret
# keys are 40 characters), in Python, YAML, JSON, shell or INI syntax.
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:secret(?:_access)?_?key|secretaccesskey|session_?token|password|api_?key)['\"]?\s*[:=]\s*['\"]?"
    r"(?P<value>[A-Za-z0-9/+=]{20,})"
)
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
# Values that look like credentials but are not: AWS's own documentation example key. The
# emulators' dummy credentials (`test`, `testing`, the account id 000000000000) are too short to
# match at all.
ALLOWED = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def findings(text: str) -> list[str]:
    found = [m.group(0) for m in ACCESS_KEY_ID.finditer(text)]
    found += [m.group("value") for m in SECRET_ASSIGNMENT.finditer(text)]
    found += [m.group(0) for m in PRIVATE_KEY.finditer(text)]
    return [value for value in found if value not in ALLOWED]


def test_no_tracked_file_holds_a_credential():
    files = tracked_files()
    assert len(files) > 50  # the repository, not an empty listing
    leaks = {}
    for path in files:
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary (PNG, ...): no credential is kept in one
        if found := findings(data.decode("utf-8", errors="replace")):
            leaks[str(path.relative_to(ROOT))] = found
    assert leaks == {}


# The search itself: what it must find and what it must let through. The credentials are assembled
# here so that no credential-looking literal is in this file.
@pytest.mark.parametrize(
    "text",
    [
        "aws_access_key_id = " + "AKIA" + "Q" * 16,
        "key: " + "ASIA" + "7" * 16,
        "AWS_SECRET_ACCESS_KEY=" + "x9" * 20,
        '"SecretAccessKey": "' + "Ab/+" * 10 + '"',
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "-----BEGIN " + "OPENSSH PRIVATE KEY-----",
    ],
)
def test_the_search_finds_credentials(text):
    assert findings(text)


@pytest.mark.parametrize(
    "text",
    [
        'LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}',
        'monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")',
        "AWS_ACCESS_KEY_ID=000000000000",
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
        'secret = f"SconesSecret{secrets.token_hex(14)}"',
    ],
)
def test_the_search_lets_dummy_values_through(text):
    assert findings(text) == []
