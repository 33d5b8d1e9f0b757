"""split_windows: inclusive windows of at most max_days days, in order, covering the range exactly."""

import datetime as dt

import pytest

from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.windows import split_windows

D = dt.date


def test_single_day():
    assert split_windows(D(2026, 1, 5), D(2026, 1, 5), 90) == [(D(2026, 1, 5), D(2026, 1, 5))]


def test_exact_multiple_and_remainder():
    assert split_windows(D(2026, 1, 1), D(2026, 1, 6), 3) == [
        (D(2026, 1, 1), D(2026, 1, 3)),
        (D(2026, 1, 4), D(2026, 1, 6)),
    ]
    assert split_windows(D(2026, 1, 1), D(2026, 1, 7), 3)[-1] == (D(2026, 1, 7), D(2026, 1, 7))


@pytest.mark.parametrize("max_days", [1, 7, 30, 90, 365])
def test_a_year_is_covered_without_gaps_or_overlaps(max_days):
    start, end = D(2025, 11, 21), D(2026, 11, 20)
    windows = split_windows(start, end, max_days)
    assert windows[0][0] == start and windows[-1][1] == end
    for (_a_from, a_to), (b_from, _b_to) in zip(windows, windows[1:], strict=False):
        assert b_from == a_to + dt.timedelta(days=1)
    assert all((to - frm).days + 1 <= max_days for frm, to in windows)
    assert sum((to - frm).days + 1 for frm, to in windows) == (end - start).days + 1
    assert len(windows) == -(-((end - start).days + 1) // max_days)


def test_accepts_iso_strings():
    assert split_windows("2026-02-27", "2026-03-02", 90) == [(D(2026, 2, 27), D(2026, 3, 2))]


def test_inverted_range_is_a_clear_error():
    with pytest.raises(BankPipelineError, match="from 2026-03-02 is after to 2026-03-01"):
        split_windows(D(2026, 3, 2), D(2026, 3, 1), 90)


def test_max_days_must_be_positive():
    with pytest.raises(BankPipelineError, match="max_days"):
        split_windows(D(2026, 3, 1), D(2026, 3, 2), 0)
