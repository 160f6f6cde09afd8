"""Unit tests of data capture: SageMaker's format, sampling, the background writer, S3, reading back."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from itertools import cycle

import boto3
import pytest
from conftest import use_offline_aws
from moto import mock_aws

from local_model.capture import (
    CaptureDestination,
    CaptureDestinationError,
    CaptureError,
    CaptureWriter,
    build_capture_record,
    capture_file_name,
)
from local_model.capture_reader import CaptureReadProblems, list_capture_files, read_captured_inferences

WHEN = datetime(2024, 5, 1, 13, 7, 9, 123456, tzinfo=UTC)
FILE_PATTERN = re.compile(
    r"^(?P<endpoint>[^/]+)/AllTraffic/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$"
)


def capture_one(writer: CaptureWriter, body: bytes = b"\x89PNG fake", endpoint: str = "bikes", **kwargs) -> bool:
    return writer.capture(endpoint, body, "image/png", "[0.25, 0.75]", "application/json", **kwargs)


# Record and file format


def test_record_has_exactly_sagemakers_fields():
    record = build_capture_record(
        b"\x00\x01binary", "image/png", "[0.1, 0.9]", "application/json", event_id="e-1", inference_time=WHEN
    )
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "image/png",
                "mode": "INPUT",
                "data": base64.b64encode(b"\x00\x01binary").decode(),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": "[0.1, 0.9]",
                "encoding": "JSON",
            },
        },
        "eventMetadata": {"eventId": "e-1", "inferenceTime": "2024-05-01T13:07:09Z"},
        "eventVersion": "0",
    }


def test_record_carries_the_inference_id_when_the_caller_sent_one():
    record = build_capture_record(b"x", "image/png", "[1, 0]", "application/json", inference_id="order-42")
    assert record["eventMetadata"]["inferenceId"] == "order-42"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["eventMetadata"]["inferenceTime"])
    assert re.fullmatch(r"[0-9a-f-]{36}", record["eventMetadata"]["eventId"])


def test_non_json_output_is_base64():
    record = build_capture_record(b"x", "image/png", "bicycle", "text/plain")
    assert record["captureData"]["endpointOutput"]["encoding"] == "BASE64"
    assert base64.b64decode(record["captureData"]["endpointOutput"]["data"]) == b"bicycle"


def test_file_name_follows_sagemakers_layout():
    name = capture_file_name("bikes-endpoint", WHEN)
    match = FILE_PATTERN.match(name)
    assert match, name
    assert name.startswith("bikes-endpoint/AllTraffic/2024/05/01/13/07-09-123-")


def test_file_name_uses_utc_hours():
    local = WHEN.astimezone(timezone(timedelta(hours=5)))
    assert capture_file_name("e", local).startswith("e/AllTraffic/2024/05/01/13/")


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix", "folder"),
    [
        ("s3://bucket/data/capture/", "bucket", "data/capture", None),
        ("s3://bucket", "bucket", "", None),
        ("/tmp/capture", None, "", "/tmp/capture"),
        ("file:///tmp/capture", None, "", "/tmp/capture"),
        ("relative/capture", None, "", "relative/capture"),
    ],
)
def test_destination_parsing(uri, bucket, prefix, folder):
    destination = CaptureDestination.parse(uri)
    assert (destination.bucket, destination.prefix) == (bucket, prefix)
    assert (str(destination.folder) if destination.folder else None) == folder


@pytest.mark.parametrize("uri", ["", "   ", "s3://", "s3:///prefix", "http://example.com/capture", "gs://bucket"])
def test_bad_destinations_are_named_errors(uri):
    with pytest.raises(CaptureDestinationError):
        CaptureDestination.parse(uri)


# The writer


def test_writer_writes_one_file_per_endpoint_and_hour(tmp_path):
    times = iter([WHEN, WHEN + timedelta(minutes=1), WHEN + timedelta(hours=1), WHEN])
    writer = CaptureWriter(tmp_path, clock=lambda: next(times))
    assert capture_one(writer, b"a") and capture_one(writer, b"b")
    assert capture_one(writer, b"c")  # the next hour
    assert capture_one(writer, b"d", endpoint="other")
    writer.close()
    files = [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*.jsonl"))]
    assert len(files) == 3 and all(FILE_PATTERN.match(f) for f in files)
    assert [f.split("/AllTraffic/")[1][:13] for f in files] == ["2024/05/01/13", "2024/05/01/14", "2024/05/01/13"]
    first = (tmp_path / files[0]).read_text().splitlines()
    assert [base64.b64decode(json.loads(line)["captureData"]["endpointInput"]["data"]) for line in first] == [
        b"a",
        b"b",
    ]
    assert writer.records_written == 4 and writer.records_dropped == 0


def test_read_back_gives_the_captured_inferences(tmp_path):
    writer = CaptureWriter(str(tmp_path))
    bodies = [bytes([i]) * 10 for i in range(5)]
    for body in bodies:
        capture_one(writer, body, inference_id="id-" + body[:1].hex())
    writer.close()
    captured = list(read_captured_inferences(tmp_path))
    assert [c.input_body for c in captured] == bodies
    assert {c.endpoint_name for c in captured} == {"bikes"}
    assert all(c.output == [0.25, 0.75] and c.input_content_type == "image/png" for c in captured)
    assert captured[0].record["eventMetadata"]["inferenceId"] == "id-00"
    assert captured[0].source.endswith(".jsonl:1")
    assert list(read_captured_inferences(tmp_path, endpoint_name="nobody")) == []
    with pytest.raises(CaptureError, match="is not a folder"):  # a missing folder, as a missing bucket
        list_capture_files(tmp_path / "missing")


def test_sampling_percentage_is_respected(tmp_path):
    draws = cycle([0.05, 0.25, 0.35, 0.95])  # 30% keeps draws below 0.30: two of every four
    writer = CaptureWriter(tmp_path, sampling_percentage=30, random_fn=lambda: next(draws))
    kept = [capture_one(writer) for _ in range(40)]
    assert kept.count(True) == 20 and kept[:4] == [True, True, False, False]
    writer.close()
    assert len(list(read_captured_inferences(tmp_path))) == 20


def test_zero_percent_captures_nothing_and_hundred_captures_everything(tmp_path):
    never = CaptureWriter(tmp_path / "never", sampling_percentage=0)
    always = CaptureWriter(tmp_path / "always", sampling_percentage=100, random_fn=lambda: 0.999999)
    assert not any(capture_one(never) for _ in range(50))
    assert all(capture_one(always) for _ in range(50))


def test_sampling_percentage_outside_0_to_100_is_refused(tmp_path):
    with pytest.raises(CaptureError, match="between 0 and 100"):
        CaptureWriter(tmp_path, sampling_percentage=101)


def test_background_thread_writes_without_being_closed(tmp_path):
    writer = CaptureWriter(tmp_path, flush_interval_s=0.05).start()
    try:
        capture_one(writer)
        deadline = time.monotonic() + 10
        while not list(tmp_path.rglob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(list(read_captured_inferences(tmp_path))) == 1
        assert not list(tmp_path.rglob("*.partial"))
    finally:
        writer.close()


def test_close_flushes_everything_buffered(tmp_path):
    writer = CaptureWriter(tmp_path, flush_interval_s=3600).start()
    for i in range(50):
        capture_one(writer, bytes([i]))
    assert writer.pending == 50 and not list(tmp_path.rglob("*.jsonl"))
    writer.close()
    assert writer.pending == 0
    assert len(list(read_captured_inferences(tmp_path))) == 50


def test_concurrent_captures_are_each_written_once(tmp_path):
    writer = CaptureWriter(tmp_path, flush_interval_s=0.01).start()

    def produce(worker):
        for i in range(100):
            capture_one(writer, f"{worker}-{i}".encode())

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    bodies = [c.input_body for c in read_captured_inferences(tmp_path)]
    assert sorted(bodies) == sorted(f"{w}-{i}".encode() for w in range(4) for i in range(100))


def test_full_buffer_drops_new_captures_after_the_wait_instead_of_growing(tmp_path, caplog):
    writer = CaptureWriter(tmp_path, max_buffered_bytes=100, wait_for_room_s=0.05)  # no writer thread: no room
    with caplog.at_level(logging.WARNING, logger="local_model.capture"):
        assert capture_one(writer, bytes(50))
        started = time.monotonic()
        assert not capture_one(writer, bytes(80))
        assert time.monotonic() - started >= 0.05  # it waited for room first
        assert not capture_one(writer, bytes(80))
        assert not capture_one(writer, bytes(80))
    assert writer.records_dropped == 3 and writer.stats()["records_dropped"] == 3
    full = [r for r in caplog.records if "capture buffer full" in r.getMessage()]
    assert len(full) == 1  # one warning per burst of drops, not one per record
    writer.flush()
    with caplog.at_level(logging.WARNING, logger="local_model.capture"):
        assert capture_one(writer, bytes(80))
    assert any("has room again; 3 dropped in all" in r.getMessage() for r in caplog.records)


def test_a_burst_larger_than_the_buffer_waits_for_room_and_is_captured_whole(tmp_path):
    """Back-pressure: 40 records of 60 bytes through a 100-byte buffer, from 8 threads at once."""
    writer = CaptureWriter(tmp_path, max_buffered_bytes=100, flush_interval_s=3600).start()
    try:
        with ThreadPoolExecutor(8) as pool:
            buffered = list(pool.map(lambda i: capture_one(writer, f"{i:060d}".encode()), range(40)))
    finally:
        writer.close()
    assert all(buffered) and writer.records_dropped == 0
    assert len(list(read_captured_inferences(tmp_path))) == 40


def test_write_failure_is_logged_and_never_raised(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = CaptureWriter(blocker / "capture").start()
    with caplog.at_level(logging.ERROR, logger="local_model.capture"):
        assert capture_one(writer)
        writer.close()  # must not raise
    assert writer.write_failures == 1 and writer.records_dropped == 1
    assert any("could not write 1 capture records" in r.getMessage() for r in caplog.records)
    assert all("PNG fake" not in r.getMessage() for r in caplog.records)  # never log image bytes


def test_an_unwritable_destination_is_named_at_start_and_every_loss_counted(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a capture folder cannot be made below a file")
    writer = CaptureWriter(blocker / "capture", flush_interval_s=3600)
    with caplog.at_level(logging.ERROR, logger="local_model.capture"):
        writer.start()
        assert [r.getMessage() for r in caplog.records if "not writable" in r.getMessage()] != []
        assert all(capture_one(writer, f"image {i}".encode()) for i in range(3))  # still accepted
        assert writer.stats()["records_buffered"] == 3
        writer.flush()
        assert capture_one(writer)
        writer.close()
    assert writer.stats() == {
        "destination": str(blocker / "capture"),
        "records_buffered": 0,
        "records_written": 0,
        "records_dropped": 4,
        "write_failures": 2,
    }
    lost = [r.getMessage() for r in caplog.records if "could not write" in r.getMessage()]
    assert len(lost) == 2 and all(m.startswith("CaptureWriteError: ") for m in lost)
    assert lost[-1].endswith("4 records dropped so far")


def test_a_writable_destination_reports_no_problem_and_counts_what_it_wrote(tmp_path):
    writer = CaptureWriter(tmp_path / "new" / "folder")
    assert writer.destination_problem() is None
    assert capture_one(writer)
    writer.close()
    assert writer.stats()["records_written"] == 1 and writer.stats()["records_dropped"] == 0


def test_reader_names_the_file_of_a_broken_record(tmp_path):
    path = tmp_path / "bikes/AllTraffic/2024/05/01/13/00-00-000-x.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"captureData": {}}\nnot json\n')
    with pytest.raises(CaptureError, match=r"00-00-000-x\.jsonl"):  # no problems counter: the first one raises
        list(read_captured_inferences(tmp_path))


def good_line(body: bytes = b"\x89PNG fine") -> str:
    return json.dumps(build_capture_record(body, "image/png", "[0.9, 0.1]", "application/json"))


def test_every_kind_of_bad_record_is_counted_and_every_good_one_read(tmp_path):
    hour = tmp_path / "bikes/AllTraffic/2024/05/01/13"
    hour.mkdir(parents=True)
    unknown = json.dumps({"captureData": {"endpointInput": {}}, "eventMetadata": {}})
    record = json.loads(good_line())
    record["captureData"]["endpointInput"]["data"] = "not base64!"
    (hour / "00-00-000-a.jsonl").write_text(
        "\n".join([good_line(b"one"), "not json", unknown, "[1, 2]", json.dumps(record), good_line(b"two")]) + "\n"
    )
    (hour / "00-00-001-b.jsonl").write_text(good_line(b"three") + "\n" + good_line(b"cut off")[:40])  # killed mid-write
    (hour / "00-00-002-c.jsonl").write_bytes(b"\xff\xfe not utf-8")
    problems = CaptureReadProblems()
    records = list(read_captured_inferences(tmp_path, problems=problems))
    assert [r.input_body for r in records] == [b"one", b"two", b"three"]
    assert problems.to_dict()["by_kind"] == {
        "truncated last line": 1,
        "line not JSON": 1,
        "not a capture record": 2,
        "bad base64": 1,
        "unreadable file": 1,
    }
    assert problems.total == 6 and len(problems.examples) == 5
    assert problems.examples[0].startswith(f"{hour / '00-00-000-a.jsonl'}:2: line not JSON")


# S3 (moto, in process)


@pytest.fixture
def s3(monkeypatch):
    use_offline_aws(monkeypatch, "us-east-1")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="capture")
        yield client


def test_s3_capture_lands_under_prefix_endpoint_and_hour(s3):
    writer = CaptureWriter("s3://capture/monitoring/datacapture", clock=lambda: WHEN)
    capture_one(writer, b"image-1", endpoint="bikes")
    capture_one(writer, b"image-2", endpoint="bikes")
    writer.close()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="capture")["Contents"]]
    assert len(keys) == 1
    relative = keys[0].removeprefix("monitoring/datacapture/")
    assert FILE_PATTERN.match(relative) and relative.startswith("bikes/AllTraffic/2024/05/01/13/07-09-123-")
    lines = s3.get_object(Bucket="capture", Key=keys[0])["Body"].read().decode().splitlines()
    assert [json.loads(line)["eventVersion"] for line in lines] == ["0", "0"]
    captured = list(read_captured_inferences("s3://capture/monitoring/datacapture", "bikes", client=s3))
    assert [c.input_body for c in captured] == [b"image-1", b"image-2"]
    assert captured[0].source == f"s3://capture/{keys[0]}:1"


def test_s3_write_failure_is_logged_not_raised(s3, caplog):
    writer = CaptureWriter("s3://no-such-bucket/prefix")
    with caplog.at_level(logging.ERROR, logger="local_model.capture"):
        capture_one(writer)
        writer.close()
    assert writer.write_failures == 1
    assert any("no-such-bucket" in r.getMessage() for r in caplog.records)


def test_reading_a_missing_bucket_is_a_named_error(s3):
    with pytest.raises(CaptureError, match="s3://no-such-bucket/prefix"):
        list(read_captured_inferences("s3://no-such-bucket/prefix", client=s3))


def test_records_being_written_still_count_as_buffered(tmp_path, monkeypatch):
    """/ping's records_buffered is what is not yet on disk: a batch a flush has taken but not yet written
    counts, so that whoever waits for 0 (scones/workflow/ledger.py) never reads a half-written state."""
    writer = CaptureWriter(tmp_path / "capture", flush_interval_s=3600)
    seen_during_write = []
    write_group = writer._write_group

    def observing(items):
        seen_during_write.append(writer.stats()["records_buffered"])
        return write_group(items)

    monkeypatch.setattr(writer, "_write_group", observing)
    assert all(capture_one(writer, f"image {i}".encode()) for i in range(2))
    assert writer.flush() == 2
    assert seen_during_write == [2]
    assert writer.stats()["records_buffered"] == 0 and writer.records_written == 2
