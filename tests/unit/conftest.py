"""Fixtures shared by the unit tests (no network)."""

from __future__ import annotations

import os

import pytest
import torch
from image_samples import make_model_dir


def use_offline_aws(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """Dummy credentials and a region, and no emulator endpoint or profile: boto3 stays in-process."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)


@pytest.fixture
def one_torch_thread():
    """Single-image inference is fastest, and deterministic, on one thread (as the server runs it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small untrained model directory in the format training writes."""
    return make_model_dir(tmp_path_factory.mktemp("model"))
