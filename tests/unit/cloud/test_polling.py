"""cloud/polling.py: the one poll loop."""

from __future__ import annotations

import time

import pytest

from cloud.polling import PollTimeoutError, poll


def counter():
    values = iter(range(1, 1000))
    return lambda: next(values)


def test_returns_the_first_value_that_is_done():
    assert poll(counter(), lambda value: value >= 3, timeout_s=5, interval_s=0.01) == 3


def test_a_timeout_carries_the_last_value_and_keeps_to_the_deadline():
    started = time.monotonic()
    with pytest.raises(PollTimeoutError) as raised:
        poll(counter(), lambda value: False, timeout_s=0.3, interval_s=0.05)
    took = time.monotonic() - started
    assert 0.2 <= took < 0.6  # no wait runs past the timeout
    assert raised.value.last >= 4


def test_the_waits_grow_to_the_cap(monkeypatch):
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)
    poll(counter(), lambda value: value >= 6, timeout_s=60, interval_s=0.1, max_interval_s=0.3, factor=2)
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])


def test_a_zero_timeout_reads_once():
    reads = []
    with pytest.raises(PollTimeoutError):
        poll(lambda: reads.append(1) or len(reads), lambda value: False, timeout_s=0)
    assert reads == [1]


def test_an_error_while_reading_ends_the_poll_at_once():
    calls = []

    def read():
        calls.append(1)
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError, match="gone"):
        poll(read, lambda value: True, timeout_s=5)
    assert calls == [1]
