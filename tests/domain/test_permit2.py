"""The Permit2 witness digest equals eth-account's typed-data digest over the reference SDK's
types, and walletd's Permit2/proxy constants equal the reference SDK's."""

from __future__ import annotations

from typing import Any

from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given, strategies as st
from x402.mechanisms.evm import constants as ref

from walletd.domain import permit2
from walletd.domain.permit2 import Permit2Transfer, nonce_slot, permit2_digest

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint = st.integers(min_value=0, max_value=2**256 - 1)


def test_permit2_and_proxy_addresses_are_the_reference_constants() -> None:
    assert permit2.PERMIT2_ADDRESS == ref.PERMIT2_ADDRESS
    assert permit2.EXACT_PROXY_ADDRESS == ref.X402_EXACT_PERMIT2_PROXY_ADDRESS
    assert permit2.UPTO_PROXY_ADDRESS == ref.X402_UPTO_PERMIT2_PROXY_ADDRESS


def _typed(chain_id: int, t: Permit2Transfer) -> dict[str, Any]:
    types = ref.PERMIT2_WITNESS_TYPES if t.facilitator is None else ref.UPTO_PERMIT2_WITNESS_TYPES
    witness: dict[str, Any] = {"to": t.to_address, "validAfter": t.valid_after}
    if t.facilitator is not None:
        witness["facilitator"] = t.facilitator
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **types,
        },
        "primaryType": "PermitWitnessTransferFrom",
        "domain": {"name": "Permit2", "chainId": chain_id,
                   "verifyingContract": ref.PERMIT2_ADDRESS},
        "message": {
            "permitted": {"token": t.token, "amount": t.amount},
            "spender": t.spender, "nonce": t.nonce, "deadline": t.deadline, "witness": witness,
        },
    }  # fmt: skip


@given(
    st.integers(min_value=1, max_value=2**64),
    addresses, addresses, uint, addresses, uint, uint, addresses, uint,
    st.one_of(st.none(), addresses),
)  # fmt: skip
def test_witness_digest_equals_eth_account_typed_data(
    chain_id: int, owner: str, token: str, amount: int, spender: str, nonce: int,
    deadline: int, to: str, valid_after: int, facilitator: str | None,
) -> None:  # fmt: skip
    t = Permit2Transfer(owner, token, amount, spender, nonce, deadline, to, valid_after,
                        facilitator)  # fmt: skip
    signable = encode_typed_data(full_message=_typed(chain_id, t))
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert permit2_digest(chain_id, t) == expected


def test_nonce_slot_is_permit2s_word_and_bit() -> None:
    assert nonce_slot(0) == (0, 1)
    assert nonce_slot(257) == (1, 2)
    assert nonce_slot(2**256 - 1) == (2**248 - 1, 2**255)
