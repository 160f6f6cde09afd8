"""The monitoring page: `scones monitor`'s report (scones/monitoring/page.py) of the deployed endpoint's
captured inferences, drawn into a folder of its own when asked, and its files served from there."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from cloud.aws import AwsTarget
from local_model.capture_reader import ALL_VARIANTS, CaptureReadProblems, read_captured_inferences
from scones.pipeline.deployment import CAPTURE_PREFIX

DRIFT_WINDOW = 100  # as `scones monitor` (scones/cli/common.py)
REPORT_FILES = ("index.html", "confidence.png", "classes.png", "lowest.png")


@dataclass
class MonitoringReport:
    aws: AwsTarget
    source: str  # s3://bucket/data-capture, or a folder
    threshold: float
    folder: Path  # where the report is written
    baseline: Path | None = None  # a trained model folder with baseline.json, for the drift section
    summary: dict | None = None  # of the last drawing
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def drawn(self) -> bool:
        return (self.folder / "index.html").is_file()

    def draw(self) -> dict:
        """Read the captures again and write the report (one drawing at a time)."""
        from scones.monitoring.page import collect, drift_section, write_report

        with self._lock:
            problems = CaptureReadProblems()
            client = self.aws.client("s3") if self.source.startswith("s3://") else None
            records = list(
                read_captured_inferences(self.source, client=client, problems=problems, variants=ALL_VARIANTS)
            )
            data = collect(records, self.source, self.threshold, problems)
            data.drift = drift_section(data, self.baseline, DRIFT_WINDOW)
            write_report(data, self.folder)
            self.summary = data.summary()
            return self.summary

    def file(self, name: str) -> Path | None:
        """A file of the report by its name, only those the report writes (no path from a request is opened)."""
        if name not in REPORT_FILES:
            return None
        path = self.folder / name
        return path if path.is_file() else None


def capture_source(outputs: dict[str, str]) -> str | None:
    bucket = outputs.get("ImageBucketName")
    return f"s3://{bucket}/{CAPTURE_PREFIX}" if bucket else None
