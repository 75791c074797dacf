"""Specification of parse_retry_after: what a Retry-After hint means, and what is unusable."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import parse_retry_after

# 2026-01-01T00:00:00Z, the wall time every hint is measured against.
WALL_NOW = 1_767_225_600.0


def at(offset: float, tz: timezone = timezone.utc) -> datetime:
    """The aware datetime ``offset`` seconds after WALL_NOW, in time zone ``tz``."""
    return datetime.fromtimestamp(WALL_NOW + offset, tz=tz)


def http_date(offset: float) -> str:
    """The HTTP-date (IMF-fixdate) ``offset`` seconds after WALL_NOW."""
    return format_datetime(at(offset), usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(120, 120.0, id="int-seconds"),
        pytest.param(0, 0.0, id="zero"),
        pytest.param(1.5, 1.5, id="float-seconds"),
        pytest.param("120", 120.0, id="digits"),
        pytest.param(" 120\r\n", 120.0, id="digits-with-whitespace"),
        pytest.param("0", 0.0, id="digits-zero"),
        pytest.param("007", 7.0, id="digits-leading-zeros"),
        pytest.param(b"120", 120.0, id="bytes-digits"),
        pytest.param(timedelta(minutes=2), 120.0, id="timedelta"),
        pytest.param(timedelta(milliseconds=250), 0.25, id="timedelta-fraction"),
        pytest.param(at(90), 90.0, id="aware-datetime-utc"),
        pytest.param(at(90, timezone(timedelta(hours=-5))), 90.0, id="aware-datetime-offset"),
        pytest.param(at(0), 0.0, id="aware-datetime-now"),
        pytest.param(http_date(90), 90.0, id="http-date"),
        pytest.param(http_date(86_400), 86_400.0, id="http-date-tomorrow"),
        pytest.param(http_date(90).encode("ascii"), 90.0, id="http-date-bytes"),
        pytest.param("Thu, 01 Jan 2026 00:01:30 GMT", 90.0, id="http-date-literal"),
        pytest.param("Thursday, 01-Jan-26 00:01:30 GMT", 90.0, id="rfc-850-date"),
        pytest.param("Thu Jan  1 00:01:30 2026", 90.0, id="asctime-date-is-utc"),
    ],
)
def test_usable_hints_give_seconds_to_wait(value: object, seconds: float) -> None:
    """A usable hint gives the seconds to wait from WALL_NOW."""
    result = parse_retry_after(value, WALL_NOW)

    assert result == pytest.approx(seconds)
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative-int"),
        pytest.param(-0.5, id="negative-float"),
        pytest.param(math.nan, id="nan"),
        pytest.param(-math.inf, id="minus-inf"),
        pytest.param(timedelta(seconds=-1), id="negative-timedelta"),
        pytest.param(at(-1), id="aware-datetime-in-the-past"),
        pytest.param(http_date(-60), id="http-date-in-the-past"),
        pytest.param(datetime(2026, 1, 1, 0, 5), id="naive-datetime"),
        pytest.param("soon", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param(b"", id="empty-bytes"),
        pytest.param("-5", id="negative-digits"),
        pytest.param("1.5", id="decimal-text-is-not-delay-seconds"),
        pytest.param("120 s", id="digits-with-unit"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="none"),
        pytest.param([120], id="list"),
        pytest.param({"seconds": 120}, id="dict"),
        pytest.param(object(), id="object"),
    ],
)
def test_unusable_hints_give_none(value: object) -> None:
    """A hint that is negative, in the past, not finite, naive or unparseable gives None."""
    assert parse_retry_after(value, WALL_NOW) is None


def test_http_date_is_measured_against_wall_now() -> None:
    """The same HTTP-date means a shorter wait the later ``wall_now`` is."""
    hint = http_date(90)

    assert parse_retry_after(hint, WALL_NOW + 60) == pytest.approx(30.0)
    assert parse_retry_after(hint, WALL_NOW + 91) is None


def test_seconds_do_not_depend_on_wall_now() -> None:
    """A delay in seconds is the same whatever the wall time."""
    assert parse_retry_after("120", 0.0) == parse_retry_after("120", WALL_NOW) == 120.0


@given(seconds=st.integers(min_value=0, max_value=10**15))
def test_any_digit_string_is_its_number_of_seconds(seconds: int) -> None:
    """Every non-negative integer, written in digits, reads back as that many seconds."""
    assert parse_retry_after(str(seconds), WALL_NOW) == float(seconds)


@given(text=st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_never_raises(text: str) -> None:
    """Any ASCII text gives None or a non-negative number of seconds (inf for too many
    digits)."""
    result = parse_retry_after(text, WALL_NOW)

    assert result is None or (result >= 0 and not math.isnan(result))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("9" * 400, id="digits-beyond-float-range"),
        pytest.param(b"9" * 400, id="bytes-digits-beyond-float-range"),
        pytest.param(10**400, id="int-beyond-float-range"),
        pytest.param(math.inf, id="float-inf"),
    ],
)
def test_a_whole_number_too_large_for_a_float_is_an_endless_wait(value: object) -> None:
    """A valid number of seconds too large for a float is longer than any cap: inf; and
    inf itself, as a parsed hint passed on (an exception's ``retry_after``), stays inf."""
    assert parse_retry_after(value, WALL_NOW) == math.inf


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("²", id="superscript-two"),
        pytest.param(b"\xb2", id="latin-1-superscript-byte"),
    ],
)
def test_unparseable_hints_give_none_rather_than_raise(value: object) -> None:
    """Hints that cannot be read as seconds give None; they never raise."""
    assert parse_retry_after(value, WALL_NOW) is None
