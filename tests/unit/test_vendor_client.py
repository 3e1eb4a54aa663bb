"""The vendor client's pieces that need no network: request budget, Retry-After, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import VendorAccount
from gateway.vendors.client import CredentialsError, RequestBudget, load_credentials, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_allows_a_burst_then_spaces_requests_to_the_window() -> None:
    """N requests go at once; the N+1st waits until the first leaves the window."""
    clock = Clock()
    budget = RequestBudget(3, 10.0, clock)
    assert [budget.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.delay() == pytest.approx(10.0)
    clock.now += 4.0
    assert budget.delay() == pytest.approx(6.0)  # the 2nd request's slot frees at 110


def test_the_budget_never_lets_more_than_n_into_any_window() -> None:
    """Scheduled send times never put N+1 requests inside one window."""
    clock = Clock()
    budget = RequestBudget(5, 1.0, clock)
    sends = []
    for i in range(40):
        clock.now = 100.0 + i * 0.03  # asks far faster than allowed
        sends.append(clock.now + budget.delay())
    sends.sort()
    assert all(sends[i + 5] - sends[i] >= 1.0 - 1e-9 for i in range(len(sends) - 5))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.25", 0.25), (None, None), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    """Retry-After as delta-seconds or an HTTP date (relative to now); garbage is None."""
    now = 1445412480.0  # 2015-10-21T07:28:00Z
    headers = {"Retry-After": header} if header is not None else {}
    assert retry_after(headers, now) == seconds


def test_credentials_come_from_the_named_environment_variables() -> None:
    """username_env/password_env name the variables; their values are the credentials."""
    account = VendorAccount(adapter="easee", username_env="EU", password_env="EP")
    creds = load_credentials("a", account, {"EU": "me", "EP": "pw"})
    assert (creds.username, creds.password) == ("me", "pw")


def test_credentials_come_from_a_file_optionally_keyed_by_account(tmp_path: Path) -> None:
    """A credentials file holds username/password, at the top or under the account's name."""
    flat = tmp_path / "flat.yaml"
    flat.write_text("username: u1\npassword: p1\n")
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text("site-a: {username: u2, password: p2}\nsite-b: {username: u3, password: p3}\n")
    assert load_credentials("x", VendorAccount(adapter="easee", credentials_file=str(flat)), {}).username == "u1"
    assert load_credentials("site-b", VendorAccount(adapter="easee", credentials_file=str(keyed)), {}).password == "p3"


def test_missing_credentials_say_where_they_were_looked_for_without_values() -> None:
    """The error names the variables (and file) it tried, never a value."""
    account = VendorAccount(adapter="easee", username_env="EU", password_env="EP")
    with pytest.raises(CredentialsError, match=r"\$EU, \$EP") as err:
        load_credentials("site", account, {"EU": "someone"})
    assert "someone" not in str(err.value)
