"""Models for rollout tests: a deliberately unsure copy of a trained model (every answer near 50/50, so every
image is rejected as low confidence), packed as model.tar.gz like any version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cloud.guardrails import Guardrails
from local_model.artifact import META_FILE, pack_model_tar

# The rollback alarms for the integration suite's quick model (10 epochs), which rejects about half of the images
# at the workflow's 0.93, more than the template's default LowConfidenceAlarmRate (30%, for a trained model). The
# rate is set as that parameter allows, and over at least 20 answers, so that a good canary of that model
# (about 50% low confidence) sets it off by chance in well under 1% of bakes (binomial: 18 of 20 at p = 0.55),
# while a bad one (100%) sets it off at its 20th answer. Errors and latency keep their defaults.
QUICK_MODEL_GUARDRAILS = Guardrails(low_confidence_rate=0.85, min_invocations=20)
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
