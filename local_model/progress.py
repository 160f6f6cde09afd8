"""Progress bars that suit where they are shown: tqdm's live bar on a terminal; elsewhere (a log file, a pipe,
a training job's log) one whole line per tenth of the work, or per half minute when the total is unknown,
instead of thousands of carriage-return redraws. Shared by the container's code and the host's."""

from __future__ import annotations

import math
import sys
from typing import IO, Any

from tqdm import tqdm

UNKNOWN_TOTAL_INTERVAL_S = 30.0  # a line this often when the total is not known
LINES_PER_BAR = 10  # lines a bar with a known total prints, besides its first and last


class LineProgress(tqdm):
    """tqdm that prints a line of its own when the work reaches the next tenth (or every half minute when the
    total is unknown), and when it closes; never the same line twice. Throttled here, in display(), so that
    callers which refresh() the bar themselves (a poll loop) are throttled too."""

    monitor_interval = 0  # tqdm's monitor thread would lower miniters to 1 and redraw at every step

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._last_line: str | None = None
        self._last_step: int | None = None
        self._closing = False
        super().__init__(*args, **kwargs)

    def _step(self) -> int:
        if self.total:
            return min(LINES_PER_BAR, int(self.n * LINES_PER_BAR / self.total))
        started = getattr(self, "start_t", None)  # not yet set when tqdm draws the bar's first state
        return 0 if started is None else int((self._time() - started) / UNKNOWN_TOTAL_INTERVAL_S)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        step = self._step()
        if msg == "" or (step == self._last_step and not self._closing):
            return True
        self._last_step = step
        line = self.__str__() if msg is None else msg
        if line != self._last_line:
            self.fp.write(line + "\n")
            self.fp.flush()
            self._last_line = line
        return True

    def close(self) -> None:
        if not self.disable:
            self._closing = True
            self.display()  # the final count
            self.sp = None  # tqdm's own close then draws nothing more (no blank line, no carriage return)
        super().close()


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(iterable: Any = None, *, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on `file` (standard error by default): live on a terminal, line by line elsewhere."""
    file = file if file is not None else sys.stderr
    if is_terminal(file):
        return tqdm(iterable, file=file, dynamic_ncols=True, **kwargs)
    kwargs.setdefault("ascii", True)  # a log reads plain characters, not block glyphs
    total = kwargs.get("total")
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if total:
        kwargs.setdefault("miniters", max(1, math.ceil(total / LINES_PER_BAR)))
        kwargs.setdefault("mininterval", 0)
    else:
        kwargs.setdefault("mininterval", UNKNOWN_TOTAL_INTERVAL_S)
    return LineProgress(iterable, file=file, **kwargs)
