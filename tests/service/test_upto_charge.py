"""An upto payment settling below its maximum: the move releases the rest, on both backends,
and the hash chain and running totals still verify."""

from __future__ import annotations

import base64
import json

import pytest

from tests.plugins.daemon import PAY_TO
from tests.service.conftest import Ledger
from walletd.db import queries
from walletd.domain.networks import BASE
from walletd.domain.payment import PayCommand

URL = "http://127.0.0.1:9/v1/chat/completions"


def _upto(maximum: int) -> str:
    entry = {"scheme": "upto", "network": BASE.caip2, "asset": BASE.usdc,
             "amount": str(maximum), "payTo": PAY_TO, "maxTimeoutSeconds": 60,
             "extra": {"name": "USD Coin", "version": "2",
                       "facilitatorAddress": "0x" + "fa" * 20}}  # fmt: skip
    doc = {"x402Version": 2, "accepts": [entry], "resource": {"url": URL}}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _daily(ledger: Ledger) -> int:
    windows = ledger.service.get_budget(ledger.caller).windows
    return next(w.spent for w in windows if w.window == "daily")


def test_settling_an_upto_payment_below_its_maximum_releases_the_rest(ledger: Ledger) -> None:
    receipt = ledger.service.pay(ledger.caller, PayCommand("u1", "POST", URL, _upto(9000)))
    assert _daily(ledger) == 9000
    with ledger.store.write() as tx:
        assert tx.move(receipt.payment_id, "signed", "settled", 1, "confirmed_on_chain", {},
                       settled_tx="0x" + "ab" * 32, charged=1234)  # fmt: skip
    with ledger.store.read() as tx:
        row = tx.tracked_payment(receipt.payment_id)
    assert (row.status, row.amount, row.authorized, row.kind) == ("settled", 1234, 9000, "upto")
    assert _daily(ledger) == 1234
    with ledger.store.engines.read.connect() as conn:
        assert queries.verify_chain(conn).ok


def test_a_charge_above_the_maximum_is_refused_by_the_ledger(ledger: Ledger) -> None:
    receipt = ledger.service.pay(ledger.caller, PayCommand("u2", "POST", URL, _upto(5000)))
    with pytest.raises(ValueError), ledger.store.write() as tx:
        tx.move(receipt.payment_id, "signed", "settled", 1, "confirmed_on_chain", {},
                charged=5001)  # fmt: skip
    assert _daily(ledger) == 5000


def test_an_upto_charge_below_its_maximum_releases_the_rest_of_a_scoped_budget(
    ledger: Ledger,
) -> None:
    from walletd.service import admin

    name = ledger.caller.name
    admin.set_budget(
        ledger.store, name, admin.BudgetChange(daily=20_000, selector="label:tool=chat")
    )
    cmd = PayCommand("u3", "POST", URL, _upto(9000), labels={"tool": "chat"})
    receipt = ledger.service.pay(ledger.caller, cmd)
    with ledger.store.write() as tx:
        assert tx.move(receipt.payment_id, "signed", "settled", 1, "confirmed_on_chain", {},
                       settled_tx="0x" + "cd" * 32, charged=1234)  # fmt: skip
    scoped = ledger.service.get_budget(ledger.caller).scoped
    assert [(w.window, w.spent) for w in scoped] == [("daily[label:tool=chat]", 1234)]
    with ledger.store.engines.read.connect() as conn:
        assert queries.verify_chain(conn).ok
