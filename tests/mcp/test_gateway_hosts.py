"""paid_fetch's host check, before anything is sent: the daemon's host rule, client and global."""

from __future__ import annotations

import pytest

from walletd.domain.budget import BudgetState
from walletd.errors import InvalidRequestError, PolicyDeniedError
from walletd.mcp.gateway import check_hosts, url_hosts


def _budget(hosts: tuple[str, ...] = (), global_hosts: tuple[str, ...] = ()) -> BudgetState:
    return BudgetState("agent", (), False, hosts=hosts, global_hosts=global_hosts)


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("https://API.example.com:8443/v1?x=1", {"api.example.com"}),
        ("http://user:pw@api.example.com/", {"api.example.com"}),
        ("http://[::1]:8000/mcp", {"::1"}),
    ],
)
def test_url_hosts_are_lower_cased_without_port_or_user(url: str, hosts: set[str]) -> None:
    assert url_hosts(url) == hosts


@pytest.mark.parametrize("url", ["ftp://api.example.com/", "file:///etc/passwd", "http:///x", "x"])
def test_a_url_that_is_not_http_with_a_host_is_refused(url: str) -> None:
    with pytest.raises(InvalidRequestError):
        url_hosts(url)


def test_no_allowlist_allows_every_host() -> None:
    check_hosts(url_hosts("https://anything.example/"), _budget())


def test_a_host_outside_the_clients_allowlist_is_refused_naming_it_and_the_list() -> None:
    with pytest.raises(PolicyDeniedError) as info:
        check_hosts(url_hosts("http://127.0.0.1:9/v1"), _budget(("localhost", "api.example")))
    assert info.value.details == {
        "rule": "host_allowlist",
        "host": "127.0.0.1",
        "allowlist": "localhost,api.example",
    }
    assert "host '127.0.0.1' is not in the host allowlist (localhost, api.example)" in str(
        info.value
    )


def test_the_global_allowlist_applies_too() -> None:
    budget = _budget(("api.example", "other.example"), global_hosts=("api.example",))
    check_hosts(url_hosts("https://api.example/x"), budget)
    with pytest.raises(PolicyDeniedError, match="not in the global host allowlist"):
        check_hosts(url_hosts("https://other.example/x"), budget)
