"""Reading Model Monitor data capture back (the CLI's `captures` and `monitor`, the ledger, tests), from S3 or
a folder, in the layout local_model/capture.py (and SageMaker) writes.

Reading is robust: a truncated last line (a file cut off while written), a line that is not JSON, a record
that is not in SageMaker's capture format, bad base64 and a file that cannot be read are each counted by
kind, with the first few locations, in a CaptureReadProblems the caller passes in, and never stop the
reading; every good record is still read. Without one, a problem raises CaptureError as before.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from local_model.capture import SHADOW_VARIANT_PREFIX, VARIANT_NAME, CaptureDestination, CaptureError, s3_client

MAX_EXAMPLES = 5

# The kinds of problems, in the order a report lists them.
TRUNCATED = "truncated last line"
NOT_JSON = "line not JSON"
UNKNOWN_RECORD = "not a capture record"
BAD_BASE64 = "bad base64"
UNREADABLE_FILE = "unreadable file"
KINDS = (TRUNCATED, NOT_JSON, UNKNOWN_RECORD, BAD_BASE64, UNREADABLE_FILE)


@dataclass
class CaptureReadProblems:
    """What could not be read, by kind, with the first MAX_EXAMPLES locations (file:line and why)."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, location: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{location}: {kind}: {detail}"[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "by_kind": {k: self.counts[k] for k in KINDS if self.counts[k]},
            "examples": self.examples,
        }

    def describe(self) -> str:
        if not self.total:
            return "none"
        return ", ".join(f"{self.counts[k]} {k}" for k in KINDS if self.counts[k])


@dataclass(frozen=True)
class CapturedInference:
    """One captured request/response, decoded."""

    endpoint_name: str
    event_id: str
    inference_time: str
    input_content_type: str
    input_body: bytes
    output_content_type: str
    output: object  # the parsed JSON answer, e.g. [p_bicycle, p_motorcycle]; text for other encodings
    source: str  # the file (and line) the record came from
    record: dict  # the raw record as stored
    variant_name: str = VARIANT_NAME  # the production or shadow variant that answered (its folder)

    @property
    def inference_id(self) -> str | None:
        return self.record.get("eventMetadata", {}).get("inferenceId")

    @classmethod
    def from_record(
        cls, record: dict, endpoint_name: str, source: str, variant_name: str = VARIANT_NAME
    ) -> CapturedInference:
        try:
            data_in = record["captureData"]["endpointInput"]
            data_out = record["captureData"]["endpointOutput"]
            meta = record["eventMetadata"]
            is_base64 = data_in["encoding"] == "BASE64"
            body = _base64(data_in["data"], source) if is_base64 else data_in["data"].encode()
            if data_out["encoding"] == "JSON":
                output = json.loads(data_out["data"])
            elif data_out["encoding"] == "BASE64":
                output = _base64(data_out["data"], source).decode(errors="replace")
            else:  # CSV: kept as text
                output = data_out["data"]
        except _BadBase64:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CaptureError(f"{source} holds a record that is not in SageMaker's capture format: {e!r}") from e
        return cls(
            endpoint_name=endpoint_name,
            event_id=meta.get("eventId", ""),
            inference_time=meta.get("inferenceTime", ""),
            input_content_type=data_in.get("observedContentType", ""),
            input_body=body,
            output_content_type=data_out.get("observedContentType", ""),
            output=output,
            source=source,
            record=record,
            variant_name=variant_name,
        )


class _BadBase64(CaptureError):
    """A record's data field claims BASE64 and is not."""


def _base64(data: str, source: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise _BadBase64(f"{source} holds data that is not valid base64: {e}") from e


PRODUCTION = "production"  # read_captured_inferences(variants=...): every variant but the shadow ones
ALL_VARIANTS = "all"


def _variant_wanted(variant: str, variants: str) -> bool:
    if variants == ALL_VARIANTS:
        return True
    if variants == PRODUCTION:
        return not variant.startswith(SHADOW_VARIANT_PREFIX)
    return variant == variants


def list_capture_files(
    destination: str | os.PathLike | CaptureDestination,
    endpoint_name: str | None = None,
    client=None,
    variants: str = PRODUCTION,
) -> list[str]:
    """Capture files (S3 keys or local paths) under the destination, oldest first within each endpoint and
    variant; `variants`: PRODUCTION (what callers were answered), ALL_VARIANTS or one variant's name.
    A destination that does not exist is CaptureError (a missing folder as a missing bucket)."""
    dest = destination if isinstance(destination, CaptureDestination) else CaptureDestination.parse(destination)
    below = f"{endpoint_name}/" if endpoint_name else ""
    if dest.is_s3:
        from botocore.exceptions import BotoCoreError, ClientError

        client = client or s3_client()
        prefix = dest.key(below) if below else (f"{dest.prefix}/" if dest.prefix else "")
        keys = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=dest.bucket, Prefix=prefix):
                keys += [obj["Key"] for obj in page.get("Contents", []) if obj["Key"].endswith(".jsonl")]
        except (BotoCoreError, ClientError) as e:
            raise CaptureError(f"cannot list captured data under {dest.uri}: {e}") from e
        return sorted(k for k in keys if _is_capture_file(k) and _variant_wanted(_variant_of(k), variants))
    if not dest.folder.is_dir():
        raise CaptureError(f"{dest.folder} is not a folder: nothing has been captured there (check --source)")
    root = dest.folder / below if below else dest.folder
    if not root.is_dir():
        return []
    found = (path.as_posix() for path in root.rglob("*.jsonl"))
    return sorted(p for p in found if _is_capture_file(p) and _variant_wanted(_variant_of(p), variants))


def _is_capture_file(path: str) -> bool:
    """`.../<endpoint>/<variant>/YYYY/MM/DD/HH/file.jsonl`: four date folders above the file."""
    parts = path.split("/")
    return len(parts) >= 7 and all(part.isdigit() for part in parts[-5:-1])


def _variant_of(path: str) -> str:
    return path.split("/")[-6]


def _endpoint_of(path: str) -> str:
    """`.../<endpoint>/<variant>/YYYY/MM/DD/HH/file.jsonl` -> `<endpoint>`."""
    parts = path.split("/")
    return parts[-7] if _is_capture_file(path) else ""


def _problem(problems: CaptureReadProblems | None, kind: str, location: str, detail: str, error: Exception) -> None:
    if problems is None:
        raise error if isinstance(error, CaptureError) else CaptureError(f"{location}: {kind}: {detail}") from error
    problems.add(kind, location, detail)


def read_captured_inferences(
    destination: str | os.PathLike | CaptureDestination,
    endpoint_name: str | None = None,
    client=None,
    problems: CaptureReadProblems | None = None,
    variants: str = PRODUCTION,
) -> Iterator[CapturedInference]:
    """Every captured inference under the destination, in the order the files were written; of the production
    variants unless `variants` says otherwise (list_capture_files). With `problems`, what cannot be read is
    counted there and skipped; without, it raises CaptureError."""
    dest = destination if isinstance(destination, CaptureDestination) else CaptureDestination.parse(destination)
    if dest.is_s3:
        client = client or s3_client()
    for name in list_capture_files(dest, endpoint_name, client, variants):
        source = f"s3://{dest.bucket}/{name}" if dest.is_s3 else name
        try:
            if dest.is_s3:
                text = client.get_object(Bucket=dest.bucket, Key=name)["Body"].read().decode()
            else:
                text = Path(name).read_text()
        except Exception as e:  # botocore, OS and decoding errors alike: name the file
            _problem(
                problems, UNREADABLE_FILE, source, str(e), CaptureError(f"cannot read captured data {source}: {e}")
            )
            continue
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            location = f"{source}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                last = number == len(lines)  # a complete file ends with a newline, so its last item is empty
                kind = TRUNCATED if last else NOT_JSON
                _problem(problems, kind, location, str(e), CaptureError(f"{location} is not JSON: {e}"))
                continue
            try:
                if not isinstance(record, dict):
                    raise CaptureError(f"{location} holds a JSON {type(record).__name__}, not a capture record")
                yield CapturedInference.from_record(record, _endpoint_of(name), location, _variant_of(name))
            except _BadBase64 as e:
                _problem(problems, BAD_BASE64, location, str(e), e)
            except CaptureError as e:
                _problem(problems, UNKNOWN_RECORD, location, str(e), e)
