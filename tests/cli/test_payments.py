"""`walletd payment list` and `payment show`: the ledger's payments, read-only, offline."""

from __future__ import annotations

import json

from tests.cli.conftest import walletd
from tests.report.conftest import Books
from walletd.domain.payment import PayReceipt


def _paid(books: Books, client: str, key: str, amount: int = 3000) -> str:
    receipt = books.pay(client, key, amount)
    assert isinstance(receipt, PayReceipt), receipt
    return receipt.payment_id


def test_payment_list_filters_by_client_status_and_since(books: Books) -> None:
    first = _paid(books, "alpha", "a1")
    second = _paid(books, "alpha", "a2", 4000)
    other = _paid(books, "beta", "b1")
    books.move(first, "settled", settled_tx="0x" + "ab" * 32)

    doc = json.loads(walletd("payment", "list", "--db-url", books.url, "--json").stdout)
    assert [p["id"] for p in doc["payments"]] == [other, second, first]  # newest first
    assert {p["id"]: p["amount"] for p in doc["payments"]}[second] == "4000"

    def ids(*args: str) -> list[str]:
        proc = walletd("payment", "list", "--db-url", books.url, "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [p["id"] for p in json.loads(proc.stdout)["payments"]]

    assert ids("--client", "alpha") == [second, first]
    assert ids("--status", "settled") == [first]
    assert ids("--since", "1h") == [other, second, first]
    assert ids("--since", "2999-01-01") == []
    assert ids("--limit", "1") == [other]
    unknown = walletd("payment", "list", "--db-url", books.url, "--client", "nobody")
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr


def test_payment_list_table_shows_usd_and_never_the_signed_header(books: Books) -> None:
    receipt = books.pay("alpha", "a1")
    assert isinstance(receipt, PayReceipt), receipt
    proc = walletd("payment", "list", "--db-url", books.url)
    assert proc.returncode == 0, proc.stderr
    assert receipt.payment_id in proc.stdout
    assert "0.003000" in proc.stdout
    assert "alpha" in proc.stdout
    narrow = walletd("payment", "list", "--db-url", books.url, COLUMNS="80").stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "0.003000" in narrow  # the amount is never cut
    for argv in (("payment", "list", "--json"), ("payment", "show", receipt.payment_id, "--json")):
        shown = walletd(*argv, "--db-url", books.url).stdout
        assert receipt.payment_id in shown
        assert receipt.header_value[:40] not in shown


def test_payment_show_prints_the_payment_and_its_events(books: Books) -> None:
    payment_id = _paid(books, "beta", "b1", 5000)
    books.move(payment_id, "settled", settled_tx="0x" + "cd" * 32)

    proc = walletd("payment", "show", payment_id, "--db-url", books.url, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["payment"]
    assert (doc["id"], doc["client"], doc["amount"], doc["status"]) == (
        payment_id, "beta", "5000", "settled",
    )  # fmt: skip
    assert [e["status"] for e in doc["events"]] == ["signed", "settled"]
    assert doc["settled_tx"] == "0x" + "cd" * 32
    assert "header_value" not in doc

    table = walletd("payment", "show", payment_id, "--db-url", books.url)
    assert table.returncode == 0, table.stderr
    assert "0.005000 USDC" in table.stdout
    assert "1970" not in table.stdout  # valid_after/valid_before are seconds, not ms
    assert "events" in table.stdout
    assert "settled" in table.stdout


def test_payment_show_of_an_unknown_id_fails_with_not_found(books: Books) -> None:
    proc = walletd("payment", "show", "pay_nope", "--db-url", books.url, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["reason"] == "NOT_FOUND"
