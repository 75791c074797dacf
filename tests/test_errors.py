"""Specification of the exception tree and the messages it carries."""

from __future__ import annotations

import pickle

import pytest

from resilient import (
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
    RejectedError,
    ResilientError,
)
from resilient._core._errors import INJECTED_BY, LINEAGE_NAME, error_name


def test_the_tree() -> None:
    """Every library exception derives from ResilientError; configuration errors are ValueErrors."""
    assert issubclass(ConfigurationError, ResilientError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(RejectedError, ResilientError)
    assert issubclass(CircuitOpenError, RejectedError)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(RejectedError("pool"), "guard 'pool' refused the call", id="no-retry-after"),
        pytest.param(
            RejectedError("pool", 0.25), "guard 'pool' refused the call; retry in 0.25 s", id="hint"
        ),
        pytest.param(
            CircuitOpenError("odds-feed", 12.5, "open"),
            "circuit breaker 'odds-feed' is open; retry in 12.5 s",
            id="open",
        ),
        pytest.param(
            CircuitOpenError("odds-feed", None, "forced_open"),
            "circuit breaker 'odds-feed' is forced open by an operator; call close() or reset() "
            "on it to admit calls again",
            id="forced-open",
        ),
        pytest.param(
            CircuitOpenError("odds-feed", None, "half_open"),
            "circuit breaker 'odds-feed' is half-open and all its trial calls are in flight",
            id="half-open",
        ),
    ],
)
def test_messages_say_what_and_what_to_do(error: RejectedError, message: str) -> None:
    """Refusal messages name the guard, the state and when to come back."""
    assert str(error) == message


def test_rejections_carry_their_pieces() -> None:
    """guard, retry_after and state are attributes, and survive pickling."""
    error = CircuitOpenError("odds-feed", 3.0, "open")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.guard, copy.retry_after, copy.state) == ("odds-feed", 3.0, "open")
    assert repr(copy) == "CircuitOpenError('odds-feed', 3.0, 'open')"
    assert RejectedError("x").retry_after is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(100.0, "100", id="hundred"),
        pytest.param(14.4, "14.4", id="workbook-threshold"),
        pytest.param(5 / 3, "1.67", id="three-digits"),
        pytest.param(0.5, "0.5", id="half"),
        pytest.param(0.023712, "0.0237", id="small"),
        pytest.param(123456.7, "123457", id="large"),
        pytest.param(1e-7, "0.0000001", id="tiny"),
        pytest.param(0.0, "0", id="zero"),
        pytest.param(1e14, "100000000000000", id="below-the-exponent-threshold"),
        pytest.param(2.5e18, "2.5e+18", id="huge"),
        pytest.param(1e300, "1e+300", id="huger"),
    ],
)
def test_numbers_in_reasons_read_as_people_write_them(value: float, text: str) -> None:
    """format_number gives three significant digits, with an exponent only from 1e15."""
    from resilient._core._errors import format_number

    assert format_number(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(12.5, "12.5", id="seconds"),
        pytest.param(1230.0, "1230", id="thousands"),
        pytest.param(-0.0, "0", id="minus-zero"),
        pytest.param(1e300, "1e+300", id="huge"),
        pytest.param(-1e20, "-1e+20", id="huge-negative"),
    ],
)
def test_seconds_in_messages_never_run_to_hundreds_of_digits(seconds: float, text: str) -> None:
    """format_seconds writes 1e300 as 1e+300, not as 301 digits."""
    from resilient._core._errors import format_seconds

    assert format_seconds(seconds) == text


def test_a_deadline_error_says_what_to_do() -> None:
    """By default it asks for more time; a guard that knows better gives its own advice,
    which survives pickling."""
    plain = DeadlineExceededError("odds.retry", 0.25)
    assert str(plain) == (
        "'odds.retry' did not start: its deadline passed 0.25 s ago; give the call more time "
        "with resilient.deadline(...) or timeout="
    )
    advised = DeadlineExceededError("odds.failover", 0.0, "bound each attempt")
    assert (
        str(advised)
        == "'odds.failover' did not start: its deadline passed 0 s ago; bound each attempt"
    )
    copy = pickle.loads(pickle.dumps(advised))
    assert (copy.guard, copy.overdue, copy.advice) == ("odds.failover", 0.0, "bound each attempt")


def test_a_deadline_error_after_work_says_what_happened_instead_of_did_not_start() -> None:
    """A guard that made requests says what they did; ``happened`` survives pickling and
    stays out of ``args``."""
    spent = DeadlineExceededError(
        "odds.failover",
        0.0,
        "more time would only allow more retries",
        happened="the call's 1.5 s deadline passed after 2 requests: 'https://a' ReadError x2",
    )
    assert str(spent) == (
        "'odds.failover': the call's 1.5 s deadline passed after 2 requests: 'https://a' "
        "ReadError x2; more time would only allow more retries"
    )
    assert spent.args == ("odds.failover", 0.0)
    copy = pickle.loads(pickle.dumps(spent))
    assert (copy.happened, str(copy)) == (spent.happened, str(spent))
    assert DeadlineExceededError("odds.retry", 0.25).happened is None


def test_an_exception_can_say_how_lineage_names_it() -> None:
    """error_name() reads an exception's own lineage name when it has one, the type name
    otherwise; a chaos mark is added either way."""

    class Status(Exception):
        _resilient_lineage_name = "503 Service Unavailable"

    assert LINEAGE_NAME == "_resilient_lineage_name"
    assert error_name(Status()) == "503 Service Unavailable"
    assert error_name(ValueError()) == "ValueError"
    marked = Status()
    setattr(marked, INJECTED_BY, "feed")
    assert error_name(marked) == "503 Service Unavailable (injected by chaos 'feed')"
