"""``walletd reconcile``, ``walletd status`` and ``walletd payment cancel``: the chain side.

They open the ledger directly (like the operator commands), so they work with
the daemon stopped or running: every ledger move is a compare-and-set on the
payment's status, so a CLI pass and the daemon's loop never both apply one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from walletd.cli._common import (
    http_url_check,
    ledger_options,
    open_store,
    settings_from,
    settings_options,
)
from walletd.cli._output import emit, json_option
from walletd.domain.money import format_usd

if TYPE_CHECKING:
    from walletd.config import Settings


def _rpc_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--rpc-url",
        default="",
        callback=http_url_check("http", "https"),
        help="Chain JSON-RPC URL (default: [chain] rpc_url); no API key here, it would show in ps.",
    )(func)


def _passphrase_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="File holding the key passphrase (else systemd credentials, else a TTY prompt).",
    )(func)


def _settings(data_dir: Path | None, config_path: Path | None, db_url: str, rpc_url: str) -> Any:
    return settings_from(data_dir, config_path, db_url=db_url, rpc_url=rpc_url)


def _reader(settings: Settings) -> Any:
    from walletd.chain.reader import Web3ChainReader

    return Web3ChainReader.open(settings.rpc_url, settings.networks)


@click.command()
@ledger_options
@_rpc_option
@json_option
def reconcile(
    data_dir: Path | None, config_path: Path | None, db_url: str, rpc_url: str, as_json: bool
) -> None:
    """Check every open payment on chain once: settle, expire (releasing budget) or dispute."""
    from walletd.service.reconcile import Reconciler

    settings = _settings(data_dir, config_path, db_url, rpc_url)
    store = open_store(settings)
    try:
        report = Reconciler(store, _reader(settings), settings.expiry_margin_seconds).run_once()
    finally:
        store.engines.dispose()
    moved = ", ".join(f"{n} {s}" for s, n in sorted(report.moved.items())) or "nothing moved"
    lines = [f"checked {report.checked} open payments: {moved}"]
    lines += [
        f"{n} open payments on {net} not checked: this node serves another network"
        for net, n in sorted(report.elsewhere.items())
    ]
    doc = {"checked": report.checked, "moved": report.moved, "elsewhere": report.elsewhere}
    emit(as_json, doc, lines)


@click.command()
@ledger_options
@_rpc_option
@json_option
def status(
    data_dir: Path | None, config_path: Path | None, db_url: str, rpc_url: str, as_json: bool
) -> None:
    """The wallet's address, balances, outstanding authorizations and frozen state."""
    from walletd.keys.keystore import read_address
    from walletd.service.reconcile import funds_status

    settings = _settings(data_dir, config_path, db_url, rpc_url)
    address = read_address(settings.keystore_path)
    store = open_store(settings)
    try:
        opener = (lambda: _reader(settings)) if settings.rpc_url else None
        st = funds_status(store, address, opener, settings.low_balance)
    finally:
        store.engines.dispose()
    doc = {
        "address": st.address,
        "frozen": st.frozen,
        "network": st.network,
        "usdc": None if st.usdc is None else str(st.usdc),
        "eth_wei": None if st.eth is None else str(st.eth),
        "outstanding": {"count": st.outstanding_count, "amount": str(st.outstanding_amount)},
        "outstanding_retired_keys": {"count": st.retired_count, "amount": str(st.retired_amount)},
        "chain_error": st.chain_error or None,
        "low_balance": st.low_balance,
    }
    emit(as_json, doc, _status_lines(st))


def _status_lines(st: Any) -> list[str]:
    lines = [f"address      {st.address}"]
    if st.usdc is not None:
        low = "  LOW (under the configured threshold)" if st.low_balance else ""
        lines.append(f"USDC         {format_usd(st.usdc)} ({st.network}){low}")
        lines.append(f"ETH          {st.eth / 10**18:.6f}")
    else:
        lines.append(f"balances     unknown ({st.chain_error or 'no --rpc-url / [chain] rpc_url'})")
    lines.append(
        f"outstanding  {st.outstanding_count} authorizations, {format_usd(st.outstanding_amount)}"
    )
    if st.retired_count:
        lines.append(
            f"retired keys {st.retired_count} authorizations, {format_usd(st.retired_amount)}"
            " (drawn on the retired keys' balances)"
        )
    lines.append(f"payments     {'FROZEN' if st.frozen else 'active'}")
    return lines


@click.group()
def payment() -> None:
    """Single payments: list them, show one with its events, cancel a rejected one."""


@payment.command("cancel")
@click.argument("payment_id")
@ledger_options
@_rpc_option
@_passphrase_option
@json_option
def payment_cancel(
    payment_id: str, data_dir: Path | None, config_path: Path | None, db_url: str,
    rpc_url: str, passphrase_file: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Send cancelAuthorization for a rejected payment; its budget comes back once mined.

    The wallet pays the gas in ETH. Accepted for `rejected` payments, and for
    `signed` ones older than 60 s; never for `settlement_pending`. A payment
    signed by a key since rotated away is cancelled with its retired keystore
    (that address pays the gas).
    """
    from walletd.chain.sender import Web3ChainSender
    from walletd.keys import keystore
    from walletd.keys.passphrase import read_passphrase
    from walletd.keys.rotation import keystore_for
    from walletd.keys.signer import LocalSigner
    from walletd.service.reconcile import cancel_payment

    settings = _settings(data_dir, config_path, db_url, rpc_url)
    store = open_store(settings)
    try:
        with store.read() as tx:  # the payment's own payer: the current key or a retired one
            payer = tx.tracked_payment(payment_id).payer  # NotFoundError before any chain call
        reader = _reader(settings)
        path = keystore_for(settings.data_dir, settings.keystore_path, payer)
        signer = LocalSigner(keystore.unlock(path, read_passphrase(passphrase_file)))
        sender = Web3ChainSender(reader, settings.max_fee_per_gas_wei)
        result = cancel_payment(store, reader, sender, signer, payment_id)
    finally:
        store.engines.dispose()
    emit(as_json, {"payment_id": payment_id, "status": result}, [f"payment {payment_id} {result}"])


@click.group("chain")
def chain() -> None:
    """One-time on-chain set-up the operator does explicitly (never done from a Pay)."""


@chain.command("approve-permit2")
@click.option("--network", required=True, help="CAIP-2 id of an enabled network, e.g. eip155:4326.")
@click.option("--token", required=True, help="Symbol or address of a pinned stablecoin there.")
@click.option(
    "--cap",
    required=True,
    help="Most USD Permit2 may ever move for walletd in this token, e.g. 50 (exact, 6 decimals).",
)
@_rpc_option
@settings_options
@_passphrase_option
@json_option
def approve_permit2(
    network: str, token: str, cap: str, rpc_url: str, config_path: Path | None,
    data_dir: Path | None, passphrase_file: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Let Permit2 move up to CAP of the wallet's TOKEN: the allowance Permit2 payments need.

    Sends one ERC-20 approve(Permit2, cap) from the wallet (it pays the gas). Permit2
    then moves funds only against a permit walletd signs for a Pay, to payTo, through
    x402's proxy; the cap bounds what any permit, or a Permit2 bug, could ever take.
    The token's on-chain decimals are checked against walletd's table first.
    """
    from walletd.chain.sender import Web3ChainSender
    from walletd.domain.money import parse_usd
    from walletd.domain.networks import by_caip2, to_token_units
    from walletd.errors import InvalidRequestError
    from walletd.keys import keystore
    from walletd.keys.passphrase import read_passphrase
    from walletd.keys.signer import LocalSigner

    settings = settings_from(data_dir, config_path, rpc_url=rpc_url)
    if network not in settings.networks:
        raise InvalidRequestError(f"network {network!r} is not enabled ([policy] networks)")
    net = by_caip2(network)
    asset = net.asset(token) or next((a for a in net.assets if a.symbol == token), None)
    if asset is None:
        raise InvalidRequestError(f"{token!r} is not a pinned stablecoin on {network}")
    units = to_token_units(asset, parse_usd(cap))
    reader = _reader(settings)
    if reader.network.caip2 != network:
        raise InvalidRequestError(f"the RPC serves {reader.network.caip2}, not {network}")
    signer = LocalSigner(keystore.unlock(settings.keystore_path, read_passphrase(passphrase_file)))
    receipt = Web3ChainSender(reader, settings.max_fee_per_gas_wei).approve_permit2(
        signer, asset.address, units
    )
    doc = {
        "network": network,
        "token": asset.address,
        "symbol": asset.symbol,
        "cap": format_usd(parse_usd(cap)),
        "cap_units": str(units),
        "tx": receipt.tx_hash,
    }
    emit(as_json, doc, [f"Permit2 may move up to {doc['cap']} {asset.symbol}: {receipt.tx_hash}"])


COMMANDS = (reconcile, status, payment, chain)
