"""local_model.progress: a live bar on a terminal, whole lines in a log."""

from __future__ import annotations

import io

from local_model.progress import LINES_PER_BAR, LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_tenth_and_no_carriage_returns() -> None:
    log = io.StringIO()
    with progress_bar(range(1000), desc="train", unit="epoch", file=log) as bar:
        for _ in bar:
            bar.set_postfix(loss="0.123")

    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert len(lines) == LINES_PER_BAR + 1  # 0%, 10%, ..., 100%
    assert lines[0].startswith("train:   0%")
    assert "1000/1000" in lines[-1] and "loss=0.123" in lines[-1]
    assert len(set(lines)) == len(lines)


def test_refreshes_from_a_poll_loop_are_throttled_too() -> None:
    log = io.StringIO()
    bar = progress_bar(total=None, desc="batch", unit="image", file=log)
    assert isinstance(bar, LineProgress)
    for done in range(50):
        bar.n = done
        bar.refresh()
    bar.total = 50
    bar.close()

    lines = log.getvalue().splitlines()
    assert len(lines) == 2  # the start, and the end (no half-minute has passed)
    assert "49/50" in lines[-1]


def test_a_terminal_gets_tqdms_live_bar() -> None:
    screen = Terminal()
    with progress_bar(total=3, desc="stage", file=screen) as bar:
        for _ in range(3):
            bar.update()

    assert not isinstance(bar, LineProgress)
    assert "\r" in screen.getvalue()


def test_a_disabled_bar_prints_nothing() -> None:
    log = io.StringIO()
    with progress_bar(total=5, file=log, disable=True) as bar:
        bar.update(5)
    assert log.getvalue() == ""
