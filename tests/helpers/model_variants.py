"""Models for rollout tests: a deliberately unsure copy of a trained model (every answer near 50/50, so every
image is rejected as low confidence), packed as model.tar.gz like any version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from local_model.artifact import META_FILE, pack_model_tar

UNSURE_TEMPERATURE = 1000.0  # logits divided by this: softmax of near-zero logits, both classes near 0.5


def make_unsure_model(model_dir: Path, dest: Path) -> Path:
    """A copy of `model_dir` (or of the folder a model.tar.gz was packed from) whose temperature makes it
    unsure of everything; returns the copy's model.tar.gz."""
    folder = Path(dest) / "unsure-model"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / META_FILE).read_text())
    meta["temperature"] = UNSURE_TEMPERATURE
    (folder / META_FILE).write_text(json.dumps(meta))
    return pack_model_tar(folder, Path(dest) / "unsure-model.tar.gz")


def make_same_answers_copy(model_dir: Path, dest: Path) -> Path:
    """A new version that answers exactly as `model_dir` does (the same weights, its model.json marked as another
    training run, so its sha256 differs): a good model for a canary. Returns its model.tar.gz."""
    folder = Path(dest) / "same-answers-model"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / META_FILE).read_text())
    meta["metrics"] = {**(meta.get("metrics") or {}), "retrained": "a new version for a canary"}
    (folder / META_FILE).write_text(json.dumps(meta))
    return pack_model_tar(folder, Path(dest) / "same-answers-model.tar.gz")
