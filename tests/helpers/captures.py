"""Captured-inference files as the model server writes them (local_model/capture.py), for the tests of what reads
them: the monitoring report, `scones captures`, the champion/challenger comparison."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from local_model.capture import VARIANT_NAME, build_capture_record, capture_file_name
from tests.helpers.image_samples import png_rgba

ENDPOINT = "scones-image-classifier"


def write_capture_file(
    folder: Path,
    answers: list[list[float]],
    start: datetime,
    *,
    variant: str = VARIANT_NAME,
    inference_ids: list[str] | None = None,
    seconds_apart: float = 0.0,
    extra_lines: tuple[str, ...] = (),
) -> Path:
    """One JSON Lines capture file under `folder`: record i holds PNG number i and `answers[i]`, captured at
    `start` + i * `seconds_apart` (with `inference_ids[i]` when given), in `variant`'s folder; `extra_lines` are
    appended as they are (lines a reader must skip and count)."""
    path = folder / capture_file_name(ENDPOINT, start, variant_name=variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            build_capture_record(
                png_rgba(seed=i),
                "image/png",
                json.dumps(answer),
                "application/json",
                inference_id=inference_ids[i] if inference_ids else None,
                inference_time=start + timedelta(seconds=seconds_apart * i),
            )
        )
        for i, answer in enumerate(answers)
    ]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
    return path
