from __future__ import annotations

import base64
import json
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given, settings, strategies as st

from walletd.domain.eip3009 import Authorization, authorization_digest, payment_header
from walletd.domain.networks import BASE, BASE_SEPOLIA

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint = st.integers(min_value=0, max_value=2**256 - 1)


def _typed(network, auth: Authorization) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": network.eip712_name,
            "version": network.eip712_version,
            "chainId": network.chain_id,
            "verifyingContract": network.usdc,
        },
        "message": {
            "from": auth.from_address,
            "to": auth.to_address,
            "value": auth.value,
            "validAfter": auth.valid_after,
            "validBefore": auth.valid_before,
            "nonce": auth.nonce,
        },
    }


@settings(max_examples=200, deadline=None)
@given(
    net=st.sampled_from([BASE, BASE_SEPOLIA]),
    frm=addresses, to=addresses, value=uint, after=uint, before=uint,
    nonce=st.binary(min_size=32, max_size=32),
)  # fmt: skip
def test_fixed_struct_digest_equals_eth_account_typed_data_digest(
    net, frm, to, value, after, before, nonce
) -> None:
    auth = Authorization(frm, to, value, after, before, nonce)
    signable = encode_typed_data(full_message=_typed(net, auth))
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert authorization_digest(net, auth) == expected


def test_v2_header_echoes_accepted_and_resource_verbatim() -> None:
    acct = Account.create()
    accepted: dict[str, Any] = {
        "scheme": "exact",
        "payTo": "0xAbC0000000000000000000000000000000000001",
        "x": [1],
    }
    auth = Authorization(acct.address, accepted["payTo"], 5, 0, 10, b"\x01" * 32)
    name, value = payment_header(
        version=2, network=BASE, accepted=accepted, resource={"url": "u"}, auth=auth,
        signature=b"\x02" * 65,
    )  # fmt: skip
    doc = json.loads(base64.b64decode(value))
    assert name == "PAYMENT-SIGNATURE"
    assert doc["accepted"] == accepted
    assert doc["resource"] == {"url": "u"}
    assert doc["payload"]["authorization"]["value"] == "5"
    assert doc["payload"]["authorization"]["nonce"] == "0x" + "01" * 32


def test_v1_header_uses_legacy_network_name() -> None:
    auth = Authorization("0x" + "11" * 20, "0x" + "22" * 20, 1, 0, 1, b"\0" * 32)
    name, value = payment_header(
        version=1, network=BASE, accepted={}, resource=None, auth=auth, signature=b"\0" * 65
    )
    doc = json.loads(base64.b64decode(value))
    assert name == "X-PAYMENT"
    assert (doc["x402Version"], doc["network"], doc["scheme"]) == (1, "base", "exact")
