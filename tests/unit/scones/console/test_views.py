"""The executions list's view while rows are still being read: the filters keep what they can tell, count
what they cannot, the counts name rows that ended but are not read yet, and the page's version changes when a
row is filled in (so the live table is sent again). No network: the rows are given."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from scones.console.store import ExecutionRow
from scones.console.views import Filters, executions_view

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class GivenRows:
    rows: list[ExecutionRow]

    def executions(self) -> list[ExecutionRow]:
        return self.rows


def row(name: str, status: str, *, read: bool, key: str = "", outcome: str = "", error: str | None = None):
    return ExecutionRow(
        machine="image",
        arn=f"arn:aws:states:us-east-1:000000000000:execution:m:{name}",
        name=name,
        status=status,
        start=T0 + timedelta(seconds=len(name)),
        stop=None if status == "RUNNING" else T0 + timedelta(seconds=30),
        key=key,
        outcome=outcome,
        error=error,
        described_status=status if read else None,
    )


ROUTED = row("routed", "SUCCEEDED", read=True, key="uploads/a.png", outcome="routed")
FAILED = row("failed", "FAILED", read=True, key="uploads/b.png", outcome="failed", error="EndpointUnavailableError")
UNREAD_FAILED = row("unread-failed", "FAILED", read=False)
UNREAD_ROUTED = row("unread-routed", "SUCCEEDED", read=False, outcome="routed")


def view(filters: Filters, rows=(ROUTED, FAILED, UNREAD_FAILED, UNREAD_ROUTED)):
    return executions_view(GivenRows(list(rows)), filters)


def names(shown) -> set[str]:
    return {r.name for r in shown.rows}


def test_with_no_filter_every_row_is_shown_and_those_being_read_are_counted():
    shown = view(Filters())
    assert names(shown) == {"routed", "failed", "unread-failed", "unread-routed"}
    assert shown.reading == 2 and shown.undecided == 0
    assert shown.by_outcome == {
        "ended, being read": 1,  # failed or rejected: its error says which
        "failed:EndpointUnavailableError": 1,
        "routed": 2,  # SUCCEEDED tells it without a description
    }


def test_the_status_filter_needs_no_description():
    shown = view(Filters(status="FAILED"))
    assert names(shown) == {"failed", "unread-failed"} and shown.undecided == 0


def test_a_filter_on_what_only_the_description_tells_counts_the_unread_rows_instead_of_guessing():
    by_key = view(Filters(q="a.png"))
    assert names(by_key) == {"routed"} and by_key.undecided == 2  # both unread rows may have that key
    by_error = view(Filters(outcome="failed:EndpointUnavailableError"))
    assert names(by_error) == {"failed"} and by_error.undecided == 1  # the unread failure may be one
    routed = view(Filters(outcome="routed"))
    assert names(routed) == {"routed", "unread-routed"} and routed.undecided == 0


def test_the_version_changes_when_a_row_is_read():
    before = view(Filters())
    read = replace(UNREAD_FAILED, key="uploads/c.png", outcome="rejected", error="LowConfidenceError")
    read.described_status = "FAILED"
    after = view(Filters(), rows=(ROUTED, FAILED, read, UNREAD_ROUTED))
    assert after.version != before.version and after.reading == 1
    assert view(Filters()).version == before.version  # and only then
