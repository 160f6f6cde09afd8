"""The one way this project waits for something on the other side (a stack, a change set, an execution,
an upload's execution, captured records): `poll`, on tenacity. Each caller says what to read, when it is
done, and what a timeout means to it (raise a named error, stop the execution, or report what was read)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_before_delay, wait_exponential

T = TypeVar("T")


class PollTimeoutError(Exception):
    """`done` never held before the timeout; `last` is what was read last."""

    def __init__(self, last: object, timeout_s: float):
        super().__init__(f"not done within {timeout_s:g} s (last read: {str(last)[:200]})")
        self.last = last


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.1,
    max_interval_s: float | None = None,
    factor: float = 1.5,
) -> T:
    """Call `read()` until `done(value)`, and return that value. The waits start at `interval_s` and grow by
    `factor` up to `max_interval_s` (default: `interval_s`, a fixed pace); no wait runs past the timeout,
    after which PollTimeoutError carries the last value. An exception from `read` ends the poll at once."""
    retrying = Retrying(
        retry=retry_if_result(lambda value: not done(value)),
        wait=wait_exponential(multiplier=interval_s, exp_base=factor, min=interval_s, max=max_interval_s or interval_s),
        stop=stop_before_delay(max(0.0, timeout_s)),
        sleep=time.sleep,
    )
    try:
        return retrying(read)
    except RetryError as e:
        raise PollTimeoutError(e.last_attempt.result(), timeout_s) from None
