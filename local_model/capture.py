"""Model Monitor data capture in SageMaker's own format, written in the background to S3 or a local folder.

Files land where SageMaker puts them, so Model Monitor jobs and our CLI read both alike:

    <destination>/<endpoint-name>/<variant-name>/YYYY/MM/DD/HH/<MM>-<SS>-<mmm>-<uuid>.jsonl

(the variant is AllTraffic, SageMaker's default, unless the endpoint has several: local_model/variants.py)

one JSON record per line:

    {"captureData": {"endpointInput":  {"observedContentType": ..., "mode": "INPUT",  "data": <base64>,
                                        "encoding": "BASE64"},
                     "endpointOutput": {"observedContentType": ..., "mode": "OUTPUT", "data": <JSON text>,
                                        "encoding": "JSON"}},
     "eventMetadata": {"eventId": <uuid>, "inferenceTime": "2024-05-01T12:34:56Z"[, "inferenceId": ...]},
     "eventVersion": "0"}

One module of about 400 lines on purpose: the record format, the file layout and the background writer with
its back-pressure are one concern (what SageMaker's data capture does), and it ships in the model image,
which holds local_model/ only.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

VARIANT_NAME = "AllTraffic"  # SageMaker's default production variant, the one of an endpoint without variants
# Shadow variants' names start with this (`scones shadow` names them so): readers of production traffic skip
# their folders, since a shadow's answers were never returned to anyone.
SHADOW_VARIANT_PREFIX = "Shadow"
EVENT_VERSION = "0"
# Captured bodies wait in memory until the writer thread stores them, at most this many bytes. A capture
# that does not fit waits (in the request's worker thread, never on the event loop) up to
# CAPTURE_WAIT_S for the writer to make room: back-pressure, so a burst of large bodies is captured whole.
# Only past that wait (storage slower than the traffic) is it dropped: counted on /ping
# (capture.records_dropped) and logged once per burst of drops, so memory stays bounded.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
CAPTURE_WAIT_S = 10.0
JSON_OUTPUT_TYPES = ("application/json",)


class CaptureError(Exception):
    """Data capture is misconfigured or captured data cannot be read back."""


class CaptureDestinationError(CaptureError):
    """The capture destination is neither `s3://bucket[/prefix]` nor a local folder."""


# Named in the server log whenever captured records are lost, so an operator can grep for it; the
# counts are on /ping (CaptureWriter.stats()).
CAPTURE_WRITE_ERROR = "CaptureWriteError"


def s3_client():
    """The one S3 client of the container: endpoint from AWS_ENDPOINT_URL(_S3), retries from botocore."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


@dataclass(frozen=True)
class CaptureDestination:
    """Where capture files go: an S3 bucket and key prefix, or a local folder."""

    uri: str
    bucket: str | None = None
    prefix: str = ""
    folder: Path | None = None

    @classmethod
    def parse(cls, uri: str | os.PathLike) -> CaptureDestination:
        uri = str(uri or "").strip()
        if not uri:
            raise CaptureDestinationError("the capture destination is empty")
        if uri.startswith("s3://"):
            bucket, _, prefix = uri[len("s3://") :].partition("/")
            if not bucket:
                raise CaptureDestinationError(f"capture destination {uri!r} names no bucket")
            return cls(uri=uri, bucket=bucket, prefix=prefix.strip("/"))
        if "://" in uri and not uri.startswith("file://"):
            raise CaptureDestinationError(f"capture destination {uri!r} is neither s3://bucket/prefix nor a folder")
        folder = Path(uri.removeprefix("file://")).expanduser()
        return cls(uri=uri, folder=folder)

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative


def format_inference_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # the precision SageMaker writes


def capture_file_name(
    endpoint_name: str, when: datetime, file_id: str | None = None, variant_name: str = VARIANT_NAME
) -> str:
    """`<endpoint>/<variant>/YYYY/MM/DD/HH/MM-SS-mmm-<uuid>.jsonl`, relative to the destination."""
    when = when.astimezone(UTC)
    stamp = f"{when:%M-%S}-{when.microsecond // 1000:03d}"
    return f"{endpoint_name}/{variant_name}/{when:%Y/%m/%d/%H}/{stamp}-{file_id or uuid.uuid4()}.jsonl"


def build_capture_record(
    input_body: bytes,
    input_content_type: str,
    output_body: str,
    output_content_type: str,
    *,
    event_id: str | None = None,
    inference_time: datetime | None = None,
    inference_id: str | None = None,
) -> dict:
    """One capture record exactly as SageMaker writes it (images are not JSON or CSV, hence BASE64)."""
    if output_content_type.split(";")[0].strip().lower() in JSON_OUTPUT_TYPES:
        output_data, output_encoding = output_body, "JSON"
    else:
        output_data, output_encoding = base64.b64encode(output_body.encode()).decode("ascii"), "BASE64"
    metadata = {
        "eventId": event_id or str(uuid.uuid4()),
        "inferenceTime": format_inference_time(inference_time or datetime.now(UTC)),
    }
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": {
                "observedContentType": input_content_type,
                "mode": "INPUT",
                "data": base64.b64encode(input_body).decode("ascii"),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": output_content_type,
                "mode": "OUTPUT",
                "data": output_data,
                "encoding": output_encoding,
            },
        },
        "eventMetadata": metadata,
        "eventVersion": EVENT_VERSION,
    }


def _write_file(destination: CaptureDestination, relative: str, data: bytes, client) -> None:
    if destination.is_s3:
        client.put_object(
            Bucket=destination.bucket, Key=destination.key(relative), Body=data, ContentType="application/jsonl"
        )
        return
    path = destination.folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)  # readers never see half a file


@dataclass
class _PendingCapture:
    endpoint_name: str
    when: datetime
    input_body: bytes
    input_content_type: str
    output_body: str
    output_content_type: str
    inference_id: str | None
    variant_name: str = VARIANT_NAME
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class CaptureWriter:
    """Samples requests and writes them in SageMaker's capture format from a background thread.

    `capture()` only appends to an in-memory buffer, so a request never waits for, or fails because of,
    storage. The thread writes one file per endpoint and hour every `flush_interval_s`; `close()` writes
    everything still buffered (the server calls it on shutdown).
    """

    def __init__(
        self,
        destination: str | os.PathLike | CaptureDestination,
        *,
        sampling_percentage: float = 100.0,
        flush_interval_s: float = 1.0,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        wait_for_room_s: float = CAPTURE_WAIT_S,
        client_factory: Callable[[], object] = s3_client,
        random_fn: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        if not 0.0 <= sampling_percentage <= 100.0:
            raise CaptureError(f"sampling percentage {sampling_percentage} is not between 0 and 100")
        self.destination = (
            destination if isinstance(destination, CaptureDestination) else CaptureDestination.parse(destination)
        )
        self.sampling_percentage = sampling_percentage
        self.flush_interval_s = flush_interval_s
        self.max_buffered_bytes = max_buffered_bytes
        self.wait_for_room_s = wait_for_room_s
        self._client_factory = client_factory
        self._client = None
        self._random = random_fn
        self._clock = clock
        self._pending: deque[_PendingCapture] = deque()
        self._pending_bytes = 0
        self._in_flight = 0  # records taken by a flush and not yet written (or dropped)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when a flush frees buffer space
        self._dropping = False  # inside a burst of drops: one warning per burst
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.records_written = 0
        self.records_dropped = 0
        self.write_failures = 0

    def start(self) -> CaptureWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
            self._thread.start()
            logger.info("capturing %.4g%% of requests to %s", self.sampling_percentage, self.destination.uri)
            if problem := self.destination_problem():
                logger.error(
                    "%s: capture destination %s is not writable (%s): requests are still answered, their "
                    "captures are dropped and counted (GET /ping: capture.records_dropped)",
                    CAPTURE_WRITE_ERROR,
                    self.destination.uri,
                    problem,
                )
        return self

    def destination_problem(self) -> str | None:
        """Why a local destination folder cannot be written, or None (S3 is only known on the first write)."""
        if self.destination.is_s3:
            return None
        try:
            self.destination.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.destination.folder):
                pass
        except OSError as e:
            return f"{type(e).__name__}: {e}"
        return None

    def stats(self) -> dict[str, int | str]:
        """What happened to the sampled requests so far, for /ping: none may go missing unreported."""
        with self._lock:
            return {
                "destination": self.destination.uri,
                "records_buffered": len(self._pending) + self._in_flight,  # not yet written nor dropped
                "records_written": self.records_written,
                "records_dropped": self.records_dropped,
                "write_failures": self.write_failures,
            }

    def sampled(self) -> bool:
        """Decide for one request whether it is captured."""
        return self.sampling_percentage >= 100.0 or self._random() * 100.0 < self.sampling_percentage

    def capture(
        self,
        endpoint_name: str,
        input_body: bytes,
        input_content_type: str,
        output_body: str,
        output_content_type: str,
        inference_id: str | None = None,
        variant_name: str = VARIANT_NAME,
    ) -> bool:
        """Buffer one request/response pair (after sampling), waiting up to `wait_for_room_s` for buffer space
        when it is full. Returns whether it was buffered; never raises. Call it off the event loop."""
        try:
            if not self.sampled():
                return False
            size = len(input_body) + len(output_body)
            with self._room:
                deadline = time.monotonic() + self.wait_for_room_s
                while not self._fits(size) and (remaining := deadline - time.monotonic()) > 0:
                    self._wake.set()  # ask for a flush now rather than at the next interval
                    self._room.wait(remaining)
                if not self._fits(size):
                    self.records_dropped += 1
                    if not self._dropping:
                        self._dropping = True
                        logger.warning(
                            "%s: capture buffer full (%d of %d bytes) for %.0f s: dropping captures until it "
                            "drains; %d dropped so far (GET /ping: capture.records_dropped)",
                            CAPTURE_WRITE_ERROR,
                            self._pending_bytes,
                            self.max_buffered_bytes,
                            self.wait_for_room_s,
                            self.records_dropped,
                        )
                    return False
                if self._dropping:
                    self._dropping = False
                    logger.warning(
                        "%s: capture buffer has room again; %d dropped in all",
                        CAPTURE_WRITE_ERROR,
                        self.records_dropped,
                    )
                self._pending.append(
                    _PendingCapture(
                        endpoint_name,
                        self._clock(),
                        bytes(input_body),
                        input_content_type,
                        output_body,
                        output_content_type,
                        inference_id,
                        variant_name,
                    )
                )
                self._pending_bytes += size
            return True
        except Exception:
            logger.exception("could not buffer a capture record; the request is unaffected")
            return False

    def _fits(self, size: int) -> bool:
        # Always room for one record in an empty buffer, whatever its size (the body limit bounds it).
        return not self._pending or self._pending_bytes + size <= self.max_buffered_bytes

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write everything buffered now. Returns the number of records written."""
        with self._write_lock:  # the thread and close() may both flush; files must not interleave
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
                self._pending_bytes = 0
                self._in_flight = len(batch)
                self._room.notify_all()
            if not batch:
                return 0
            groups: dict[tuple[str, str, str], list[_PendingCapture]] = {}
            for item in batch:
                hour = f"{item.when.astimezone(UTC):%Y%m%d%H}"
                groups.setdefault((item.endpoint_name, item.variant_name, hour), []).append(item)
            written = 0
            try:
                for items in groups.values():
                    written += self._write_group(items)
            finally:
                with self._lock:
                    self._in_flight = 0
            return written

    def _write_group(self, items: list[_PendingCapture]) -> int:
        first = items[0]
        relative = capture_file_name(first.endpoint_name, first.when, variant_name=first.variant_name)
        try:
            lines = [
                json.dumps(
                    build_capture_record(
                        item.input_body,
                        item.input_content_type,
                        item.output_body,
                        item.output_content_type,
                        event_id=item.event_id,
                        inference_time=item.when,
                        inference_id=item.inference_id,
                    ),
                    separators=(",", ":"),
                )
                for item in items
            ]
            if self.destination.is_s3 and self._client is None:
                self._client = self._client_factory()
            _write_file(self.destination, relative, ("\n".join(lines) + "\n").encode(), self._client)
        except Exception as e:
            # Capture is best effort: losing a batch is logged and counted, never raised into the server.
            with self._lock:
                self.write_failures += 1
                self.records_dropped += len(items)
                dropped = self.records_dropped
            logger.error(
                "%s: could not write %d capture records to %s (%s): %s; %d records dropped so far",
                CAPTURE_WRITE_ERROR,
                len(items),
                self.destination.uri,
                relative,
                e,
                dropped,
            )
            return 0
        with self._lock:
            self.records_written += len(items)
        return len(items)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                logger.exception("capture writer failed; continuing")

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and write everything still buffered."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("capture writer did not stop within %.0f s", timeout_s)
            self._thread = None
        self.flush()
        if self.records_dropped:
            logger.warning("%s: %d capture records were dropped in total", CAPTURE_WRITE_ERROR, self.records_dropped)
