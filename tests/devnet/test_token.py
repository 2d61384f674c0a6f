"""TestUSDC on a real anvil, at Base's USDC address: does it behave like USDC's EIP-3009?

Signatures are made with eth-account's generic typed-data signer for Base mainnet's domain,
independently of walletd's own digest code, so these tests pin the token, not walletd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from tests.plugins.chain import Chain
from walletd.devnet import chain as devchain
from walletd.domain.networks import BASE

pytestmark = pytest.mark.chain

REPO_ROOT = Path(__file__).resolve().parents[2]
ONE_USDC = 1_000_000
# Base mainnet's USDC domain separator, as published for the real contract (x402-protocol §2.2).
BASE_USDC_DOMAIN_SEPARATOR = "02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f"

_AUTH_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
_CANCEL_FIELDS = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]
_ARGS = "address,address,uint256,uint256,uint256,bytes32"
VRS = "uint8,bytes32,bytes32"


def domain() -> dict[str, Any]:
    return {
        "name": BASE.eip712_name,
        "version": BASE.eip712_version,
        "chainId": BASE.chain_id,
        "verifyingContract": devchain.USDC_ADDRESS,
    }


@dataclass(frozen=True)
class Signed:
    """A signed EIP-3009 message: the leading call arguments plus the 65-byte signature."""

    args: tuple[Any, ...]
    signature: bytes

    def vrs(self) -> tuple[int, bytes, bytes]:
        sig = self.signature
        return sig[64], sig[:32], sig[32:64]


def sign_authorization(
    payer: LocalAccount,
    to: str,
    value: int,
    *,
    valid_before: int,
    valid_after: int = 0,
    nonce: bytes | None = None,
    primary_type: str = "TransferWithAuthorization",
) -> Signed:
    nonce = nonce if nonce is not None else os.urandom(32)
    message = {
        "from": payer.address,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    signed = payer.sign_typed_data(domain(), {primary_type: _AUTH_FIELDS}, message)
    args = (payer.address, to, value, valid_after, valid_before, nonce)
    return Signed(args=args, signature=bytes(signed.signature))


def sign_cancel(authorizer: LocalAccount, nonce: bytes) -> Signed:
    message = {"authorizer": authorizer.address, "nonce": nonce}
    signed = authorizer.sign_typed_data(domain(), {"CancelAuthorization": _CANCEL_FIELDS}, message)
    return Signed(args=(authorizer.address, nonce), signature=bytes(signed.signature))


def call_with(
    usdc: Contract, name: str, params: str, signed: Signed, form: str
) -> ContractFunction:
    """``name`` through its ``(…, v, r, s)`` overload (form "vrs") or its bytes one."""
    if form == "vrs":
        fn = usdc.get_function_by_signature(f"{name}({params},{VRS})")
        return cast(ContractFunction, fn(*signed.args, *signed.vrs()))
    fn = usdc.get_function_by_signature(f"{name}({params},bytes)")
    return cast(ContractFunction, fn(*signed.args, signed.signature))


def transfer_call(usdc: Contract, signed: Signed, form: str = "bytes") -> ContractFunction:
    return call_with(usdc, "transferWithAuthorization", _ARGS, signed, form)


def receive_call(usdc: Contract, signed: Signed, form: str = "bytes") -> ContractFunction:
    return call_with(usdc, "receiveWithAuthorization", _ARGS, signed, form)


def cancel_call(usdc: Contract, signed: Signed, form: str = "bytes") -> ContractFunction:
    return call_with(usdc, "cancelAuthorization", "address,bytes32", signed, form)


def funded_payer(chain: Chain, amount: int = 10 * ONE_USDC) -> LocalAccount:
    """A fresh payer holding USDC and no ETH, as in x402: the facilitator pays the gas."""
    payer: LocalAccount = Account.create()
    chain.mint(payer.address, amount)
    return payer


def assert_reverts(fn: ContractFunction, sender: str, reason: str) -> None:
    with pytest.raises(ContractLogicError, match=reason):
        fn.call({"from": sender})


@pytest.fixture
def facilitator() -> LocalAccount:
    return devchain.dev_account(1)


@pytest.fixture
def payee() -> LocalAccount:
    return devchain.dev_account(2)


# ------------------------------------------------------------------ token basics


def test_token_reports_base_usdc_metadata(chain: Chain) -> None:
    fns = chain.usdc.functions
    assert chain.usdc.address == BASE.usdc
    assert fns.name().call() == "USD Coin"
    assert fns.symbol().call() == "USDC"
    assert fns.decimals().call() == 6
    assert fns.version().call() == "2"
    assert fns.minter().call() == devchain.dev_account(0).address


def test_minter_mints_and_nobody_else_can(chain: Chain, facilitator: LocalAccount) -> None:
    holder = Account.create().address
    supply_before = chain.usdc.functions.totalSupply().call()

    receipt = chain.mint(holder, 3 * ONE_USDC)

    assert receipt["status"] == 1
    assert chain.usdc_balance(holder) == 3 * ONE_USDC
    assert chain.usdc.functions.totalSupply().call() == supply_before + 3 * ONE_USDC
    assert_reverts(chain.usdc.functions.mint(holder, 1), facilitator.address, "not a minter")


def test_on_chain_domain_separator_equals_eth_accounts(chain: Chain) -> None:
    probe = {"from": BASE.usdc, "to": BASE.usdc, "value": 0, "validAfter": 0, "validBefore": 0}
    signable = encode_typed_data(
        domain(), {"TransferWithAuthorization": _AUTH_FIELDS}, {**probe, "nonce": bytes(32)}
    )

    on_chain = bytes(chain.usdc.functions.DOMAIN_SEPARATOR().call())

    assert on_chain == bytes(signable.header)
    assert on_chain.hex() == BASE_USDC_DOMAIN_SEPARATOR
    _, name, version, chain_id, verifying, _, _ = chain.usdc.functions.eip712Domain().call()
    assert (name, version, chain_id, verifying) == ("USD Coin", "2", 8453, BASE.usdc)


def test_dev_accounts_are_anvils_funded_accounts(chain: Chain) -> None:
    derived = [devchain.dev_account(i).address for i in range(devchain.DEV_ACCOUNT_COUNT)]
    assert derived == list(chain.w3.eth.accounts)
    assert all(chain.eth_balance(addr) > 0 for addr in derived)
    with pytest.raises(ValueError, match="0-9"):
        devchain.dev_account(devchain.DEV_ACCOUNT_COUNT)


def test_usdc_address_is_the_pinned_base_usdc() -> None:
    assert BASE.usdc == devchain.USDC_ADDRESS


def test_installing_twice_keeps_the_installed_token(chain: Chain) -> None:
    holder = Account.create().address
    chain.mint(holder, 5)

    again = devchain.install_usdc(chain.w3)

    assert again.address == chain.usdc.address
    assert chain.usdc_balance(holder) == 5


# -------------------------------------------------------------- EIP-3009 transfer


@pytest.mark.parametrize("form", ["vrs", "bytes"])
def test_signed_authorization_settles_and_moves_exactly_the_value(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount, form: str
) -> None:
    payer = funded_payer(chain, 10 * ONE_USDC)
    payee_before = chain.usdc_balance(payee.address)
    signed = sign_authorization(
        payer, payee.address, 1_234_567, valid_before=chain.timestamp() + 600
    )

    receipt = chain.transact(facilitator, transfer_call(chain.usdc, signed, form))

    assert receipt["status"] == 1
    assert chain.usdc_balance(payer.address) == 10 * ONE_USDC - 1_234_567
    assert chain.usdc_balance(payee.address) == payee_before + 1_234_567
    assert chain.usdc.functions.authorizationState(payer.address, signed.args[5]).call() is True
    assert chain.eth_balance(payer.address) == 0


def test_settlement_emits_authorization_used_and_transfer(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain)
    signed = sign_authorization(payer, payee.address, ONE_USDC, valid_before=chain.timestamp() + 60)

    receipt = chain.transact(facilitator, transfer_call(chain.usdc, signed))

    used = chain.usdc.events.AuthorizationUsed().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["authorizer"], e["args"]["nonce"]) for e in used] == [
        (payer.address, signed.args[5])
    ]
    transfers = chain.usdc.events.Transfer().process_receipt(receipt, errors=DISCARD)
    assert [dict(e["args"]) for e in transfers] == [
        {"from": payer.address, "to": payee.address, "value": ONE_USDC}
    ]


@pytest.mark.parametrize(("first", "second"), [("vrs", "vrs"), ("bytes", "vrs"), ("vrs", "bytes")])
def test_replayed_authorization_reverts(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount, first: str, second: str
) -> None:
    payer = funded_payer(chain)
    signed = sign_authorization(payer, payee.address, ONE_USDC, valid_before=chain.timestamp() + 60)
    chain.transact(facilitator, transfer_call(chain.usdc, signed, first))

    replay = transfer_call(chain.usdc, signed, second)

    assert_reverts(replay, facilitator.address, "authorization is used or canceled")
    mined = chain.transact(facilitator, replay, gas=200_000)
    assert mined["status"] == 0
    assert chain.usdc_balance(payer.address) == 9 * ONE_USDC


def test_authorization_signed_by_someone_else_reverts(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain)
    forger: LocalAccount = Account.create()
    forged = sign_authorization(
        forger, payee.address, ONE_USDC, valid_before=chain.timestamp() + 60
    )
    claimed = Signed(args=(payer.address, *forged.args[1:]), signature=forged.signature)

    for form in ("vrs", "bytes"):
        assert_reverts(transfer_call(chain.usdc, claimed, form), facilitator.address, "invalid sig")


def test_authorization_signed_for_another_chain_reverts(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain)
    message = {
        "from": payer.address,
        "to": payee.address,
        "value": ONE_USDC,
        "validAfter": 0,
        "validBefore": chain.timestamp() + 60,
        "nonce": os.urandom(32),
    }
    other_chain = {**domain(), "chainId": 84532}
    sig = payer.sign_typed_data(
        other_chain, {"TransferWithAuthorization": _AUTH_FIELDS}, message
    ).signature
    signed = Signed(args=tuple(message.values()), signature=bytes(sig))

    assert_reverts(transfer_call(chain.usdc, signed), facilitator.address, "invalid signature")


def test_authorization_past_valid_before_reverts(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain)
    signed = sign_authorization(payer, payee.address, ONE_USDC, valid_before=chain.timestamp() + 60)
    transfer_call(chain.usdc, signed).call({"from": facilitator.address})  # valid now

    chain.increase_time(120)

    assert_reverts(
        transfer_call(chain.usdc, signed), facilitator.address, "authorization is expired"
    )


def test_authorization_before_valid_after_reverts(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain)
    now = chain.timestamp()
    signed = sign_authorization(
        payer, payee.address, ONE_USDC, valid_after=now + 3600, valid_before=now + 7200
    )

    assert_reverts(
        transfer_call(chain.usdc, signed), facilitator.address, "authorization is not yet valid"
    )
    chain.increase_time(3700)
    assert chain.transact(facilitator, transfer_call(chain.usdc, signed))["status"] == 1


def test_authorization_beyond_balance_reverts_with_usdc_wording(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain, ONE_USDC)
    signed = sign_authorization(payer, payee.address, ONE_USDC + 1, valid_before=2**40)

    assert_reverts(
        transfer_call(chain.usdc, signed), facilitator.address, "transfer amount exceeds balance"
    )


# ----------------------------------------------------------------- cancel, receive


@pytest.mark.parametrize("form", ["vrs", "bytes"])
def test_canceled_authorization_can_no_longer_be_used(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount, form: str
) -> None:
    payer = funded_payer(chain)
    signed = sign_authorization(payer, payee.address, ONE_USDC, valid_before=chain.timestamp() + 60)
    nonce = signed.args[5]

    receipt = chain.transact(facilitator, cancel_call(chain.usdc, sign_cancel(payer, nonce), form))

    canceled = chain.usdc.events.AuthorizationCanceled().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["authorizer"], e["args"]["nonce"]) for e in canceled] == [
        (payer.address, nonce)
    ]
    assert chain.usdc.functions.authorizationState(payer.address, nonce).call() is True
    assert_reverts(transfer_call(chain.usdc, signed), facilitator.address, "used or canceled")
    assert_reverts(
        cancel_call(chain.usdc, sign_cancel(payer, nonce)), facilitator.address, "used or canceled"
    )
    assert chain.usdc_balance(payer.address) == 10 * ONE_USDC


def test_cancel_signed_by_someone_else_reverts(chain: Chain, facilitator: LocalAccount) -> None:
    payer = funded_payer(chain)
    forged = sign_cancel(Account.create(), os.urandom(32))
    claimed = Signed(args=(payer.address, forged.args[1]), signature=forged.signature)

    assert_reverts(cancel_call(chain.usdc, claimed), facilitator.address, "invalid signature")


@pytest.mark.parametrize("form", ["vrs", "bytes"])
def test_receive_with_authorization_works_only_for_the_payee(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount, form: str
) -> None:
    payer = funded_payer(chain)
    payee_before = chain.usdc_balance(payee.address)
    signed = sign_authorization(
        payer,
        payee.address,
        ONE_USDC,
        valid_before=chain.timestamp() + 60,
        primary_type="ReceiveWithAuthorization",
    )
    receive = receive_call(chain.usdc, signed, form)

    assert_reverts(receive, facilitator.address, "caller must be the payee")
    assert chain.transact(payee, receive)["status"] == 1
    assert chain.usdc_balance(payee.address) == payee_before + ONE_USDC


def test_receive_authorization_cannot_be_used_as_a_transfer(
    chain: Chain, facilitator: LocalAccount, payee: LocalAccount
) -> None:
    payer = funded_payer(chain)
    signed = sign_authorization(
        payer,
        payee.address,
        ONE_USDC,
        valid_before=chain.timestamp() + 60,
        primary_type="ReceiveWithAuthorization",
    )

    assert_reverts(transfer_call(chain.usdc, signed), facilitator.address, "invalid signature")


# ----------------------------------------------------------------- test bed itself


def test_snapshot_and_revert_isolate_state_and_time(chain: Chain) -> None:
    holder = Account.create().address
    time_before = chain.timestamp()
    snap_id = chain.snapshot()

    chain.mint(holder, ONE_USDC)
    chain.set_eth_balance(holder, 10**18)
    assert chain.increase_time(86_400) >= time_before + 86_400
    chain.revert(snap_id)

    assert chain.usdc_balance(holder) == 0
    assert chain.eth_balance(holder) == 0
    assert chain.timestamp() < time_before + 86_400


def test_anvil_process_is_gone_after_stop() -> None:
    node = devchain.Anvil(chain_id=31337)
    assert devchain.connect(node.rpc_url).eth.chain_id == 31337

    node.stop()

    assert not node.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)
    node.stop()  # stopping twice is harmless


def test_anvil_context_manager_stops_the_node() -> None:
    with devchain.Anvil(block_time=1) as node:
        url = node.rpc_url
        assert node.is_running()

    assert not node.is_running()
    with pytest.raises(devchain.DevnetError):
        devchain.connect(url)


@pytest.mark.slow
def test_anvil_left_running_is_stopped_at_interpreter_exit() -> None:
    script = "from walletd.devnet.chain import Anvil; print(Anvil().pid)"

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    with pytest.raises(ProcessLookupError):
        os.kill(int(result.stdout.strip()), 0)


def test_missing_anvil_names_npm_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(devchain.ANVIL_ENV, raising=False)
    monkeypatch.setattr(devchain, "_repo_root", lambda: tmp_path)

    with pytest.raises(devchain.AnvilNotInstalledError, match="npm ci"):
        devchain.anvil_binary()


def test_anvil_override_must_be_an_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(devchain.ANVIL_ENV, str(tmp_path / "nope"))

    with pytest.raises(devchain.AnvilNotInstalledError, match=devchain.ANVIL_ENV):
        devchain.anvil_binary()


@pytest.mark.slow
def test_artifact_rebuild_is_byte_identical() -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed to rebuild contracts (install Node 20, run npm ci)"

    result = subprocess.run(
        [node, "contracts/build.mjs", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
