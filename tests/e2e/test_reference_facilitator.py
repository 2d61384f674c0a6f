"""A header from `walletd pay` passes the reference x402 facilitator's verify on anvil,
and changing any one signed field makes it invalid."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements

from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome, demand_header

URL = "http://127.0.0.1:9/v1/chat/completions"


def _verify(chain: Chain, payload: dict[str, Any], accepted: dict[str, Any]) -> Any:
    facilitator = dev_key = chain.dev_account(1)
    signer = FacilitatorWeb3Signer(private_key=dev_key.key.hex(), rpc_url=chain.rpc_url)
    scheme = ExactEvmFacilitatorScheme(signer)
    del facilitator
    return scheme.verify(
        PaymentPayload.model_validate(payload), PaymentRequirements.model_validate(accepted)
    )


@pytest.fixture
def paid(chain: Chain, wallet_home: WalletHome, daemon: Daemon) -> dict[str, Any]:
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    chain.mint(wallet_home.address, 1_000_000)
    out = wallet_home.run(
        "pay", "--socket", str(wallet_home.socket), "--token-file", str(token),
        "--payment-required", demand_header(url=URL), "--url", URL, "--method", "POST",
    )  # fmt: skip
    name, value = out.stdout.strip().split(": ", 1)
    assert name == "PAYMENT-SIGNATURE"
    payload: dict[str, Any] = json.loads(base64.b64decode(value))
    return payload


def test_reference_facilitator_verifies_the_header(chain: Chain, paid: dict[str, Any]) -> None:
    result = _verify(chain, paid, paid["accepted"])
    assert result.is_valid, result.invalid_reason


SIGNED_FIELDS = ["from", "to", "value", "validAfter", "validBefore", "nonce", "signature"]


@pytest.mark.parametrize("field", SIGNED_FIELDS)
def test_changing_one_signed_field_makes_it_invalid(
    chain: Chain, paid: dict[str, Any], field: str
) -> None:
    payload = json.loads(json.dumps(paid))
    accepted = dict(payload["accepted"])
    auth = payload["payload"]["authorization"]
    if field == "signature":
        sig = payload["payload"]["signature"]
        payload["payload"]["signature"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    elif field == "nonce":
        auth["nonce"] = auth["nonce"][:-1] + ("0" if auth["nonce"][-1] != "0" else "1")
    elif field in ("from", "to"):
        auth[field] = chain.dev_account(5).address
        if field == "to":  # keep the requirement consistent: only the signature can object
            accepted["payTo"] = auth["to"]
    elif field == "value":
        auth["value"] = str(int(auth["value"]) + 1)
        accepted["amount"] = auth["value"]
    else:
        auth[field] = str(int(auth[field]) - 1)
    payload["accepted"] = accepted
    result = _verify(chain, payload, accepted)
    assert not result.is_valid
