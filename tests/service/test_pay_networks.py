"""Pay on the other pinned networks: each stablecoin signed in its own EIP-712 domain."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from eth_account import Account

from tests.plugins.daemon import PAY_TO
from tests.service.conftest import Ledger
from walletd.domain.eip3009 import Authorization, authorization_digest
from walletd.domain.networks import BASE, CELO
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.errors import PolicyDeniedError
from walletd.service.wallet import WalletService

URL = "http://127.0.0.1:9/v1/chat/completions"
USDT = CELO.assets[1]


def _header(asset_address: str, amount: str = "2500") -> str:
    entry = {"scheme": "exact", "network": CELO.caip2, "asset": asset_address, "amount": amount,
             "payTo": PAY_TO, "maxTimeoutSeconds": 60,
             "extra": {"name": USDT.eip712_name, "version": USDT.eip712_version}}  # fmt: skip
    doc = {"x402Version": 2, "accepts": [entry], "resource": {"url": URL}}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _service(ledger: Ledger, **limits: Any) -> WalletService:
    return WalletService(ledger.store, ledger.signer, Limits(**limits))


def test_second_stablecoin_is_signed_in_its_own_domain_and_recorded_in_usd(
    ledger: Ledger,
) -> None:
    service = _service(ledger, networks=(BASE.caip2, CELO.caip2))
    receipt = service.pay(ledger.caller, PayCommand("k1", "POST", URL, _header(USDT.address)))
    assert (receipt.network, receipt.amount) == (CELO.caip2, 2500)
    auth = json.loads(base64.b64decode(receipt.header_value))["payload"]
    a = auth["authorization"]
    signed = Authorization(a["from"], a["to"], int(a["value"]), int(a["validAfter"]),
                           int(a["validBefore"]), bytes.fromhex(a["nonce"][2:]))  # fmt: skip
    digest = authorization_digest(CELO, signed, USDT)
    assert Account._recover_hash(digest, signature=auth["signature"]) == ledger.signer.address
    assert digest != authorization_digest(CELO, signed)  # not USDC's domain
    with ledger.store.read() as tx:
        assert tx.tracked_payment(receipt.payment_id).asset == USDT.address


def test_stablecoin_outside_the_asset_allowlist_is_refused_and_nothing_signed(
    ledger: Ledger,
) -> None:
    service = _service(ledger, networks=(CELO.caip2,), assets=("USDC",))
    with pytest.raises(PolicyDeniedError) as info:
        service.pay(ledger.caller, PayCommand("k1", "POST", URL, _header(USDT.address)))
    assert info.value.details["rule"] == "asset_allowlist"
    assert ledger.signer.calls == 0
