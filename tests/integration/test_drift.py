"""Drift detection end to end: real held-out images go through the real model server over HTTP, its data
capture writes them in SageMaker's format, and the captured answers, read back, are compared with the
baseline training saved. The held-out (validation) images as they are: no drift; the same images darkened:
drift.

Stream size and shift from benchmarks/drift.py (quick recipe, the one this suite trains): the rule flagged
0.2% of random 100-image windows of unseen real images and 100% of darkened (x0.4) ones, for every window
of 25 or more. Here the baseline stream is the validation split itself (so its statistics are ~0), the
order is fixed by a seed, and on the suite's model (seed 0) the darkened stream sits far past the rule
(class-share PSI ~1.2 against 0.2, chi-square p ~1e-11): the outcome does not depend on luck. Not used:
rotation and noise, which the 10-epoch model barely notices (the benchmark flags 1-3% of such windows)."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from local_model.baseline import load_baseline
from local_model.capture_reader import read_captured_inferences
from local_model.data import holdout_split, load_image_folder
from local_model.train import Hyperparameters
from scones.monitoring.drift import DEFAULT_MIN_WINDOW, DEFAULT_PSI_THRESHOLD, detect_drift, scores_of

from .conftest import QUICK_HYPERPARAMETERS

pytestmark = pytest.mark.integration

DARKEN = 0.4  # brightness factor of the shifted stream
SEED = 20260  # the order the images are sent in
CAPTURE_DEADLINE_S = 60.0  # the server flushes captures every second


def held_out_images(data_dir) -> np.ndarray:
    """The images the suite's model held out as its validation split (so its baseline), as training split them."""
    hp = Hyperparameters.from_dict({k: str(v) for k, v in QUICK_HYPERPARAMETERS.items()})
    data = load_image_folder(data_dir)
    _, val_idx = holdout_split(data.labels, hp.val_fraction, hp.seed)
    order = np.random.default_rng(SEED).permutation(val_idx)
    return data.images[order]


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def send(url: str, image: bytes, inference_id: str) -> list[float]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=image,
        headers={"Content-Type": "image/png", "X-Amzn-SageMaker-Inference-Id": inference_id},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def captured_outputs(destination: str, inference_ids: list[str]) -> list[object]:
    """The captured answers of `inference_ids`, in that order, once the server has written them all."""
    wanted = set(inference_ids)
    deadline = time.monotonic() + CAPTURE_DEADLINE_S
    while True:
        found = {
            r.record["eventMetadata"].get("inferenceId"): r.output
            for r in read_captured_inferences(destination)
            if r.record["eventMetadata"].get("inferenceId") in wanted
        }
        if len(found) == len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = sorted(wanted - set(found))
    assert not missing, (
        f"{len(missing)} of {len(wanted)} inferences not captured in {CAPTURE_DEADLINE_S} s: {missing[:3]}"
    )
    return [found[i] for i in inference_ids]


def test_drift_is_flagged_on_darkened_images_and_not_on_held_out_ones(model_server, model_dir, data_dir):
    if model_server.capture_destination is None:
        pytest.skip("external model server (docker compose): its captured data is not readable from here")
    baseline = load_baseline(model_dir)
    images = held_out_images(data_dir)
    assert baseline.n_images == len(images) >= 2 * DEFAULT_MIN_WINDOW - 10  # the suite model's ~100 held out
    run = uuid.uuid4().hex[:8]
    streams = {
        "held-out": [png_bytes(p) for p in images],
        "darkened": [png_bytes((p * DARKEN).round().astype(np.uint8)) for p in images],
    }
    reports, served = {}, {}
    for name, stream in streams.items():
        ids = [f"drift-{run}-{name}-{i}" for i in range(len(stream))]
        served[name] = [
            send(model_server.url, image, inference_id) for image, inference_id in zip(stream, ids, strict=True)
        ]
        outputs = captured_outputs(model_server.capture_destination, ids)
        assert outputs == served[name]  # capture stored exactly what the server answered
        confidences, classes, skipped = scores_of(outputs, list(baseline.classes))
        assert skipped == 0
        reports[name] = detect_drift(baseline, confidences, classes)

    held_out, darkened = reports["held-out"], reports["darkened"]
    assert held_out.enough_data and not held_out.drifted, held_out.reason
    # The same images the baseline was computed on, scored by the server: the same scores.
    assert held_out.psi_confidence < 0.01 and held_out.psi_classes < 0.01, held_out.to_dict()
    assert darkened.drifted, darkened.reason
    # Far past the rule, not just over it: with this model darkening mostly moves the predicted classes
    # (dark images read as bicycles), on other models mostly the confidences; either view counts.
    strongest = max(darkened.psi_confidence, darkened.psi_classes)
    assert strongest > 2 * DEFAULT_PSI_THRESHOLD, darkened.to_dict()
    assert min(darkened.ks_p_value, darkened.chi2_p_value) < 1e-6, darkened.to_dict()
