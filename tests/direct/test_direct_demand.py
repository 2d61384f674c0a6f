"""The direct demand's shape and the proof header config, without a chain."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.direct.conftest import RECIPIENT, direct_header
from tests.plugins.daemon import demand_header
from walletd.config import load_settings
from walletd.domain.demand import decode_demand
from walletd.domain.direct import DEFAULT_PROOF_HEADER, parse_direct
from walletd.domain.networks import BASE
from walletd.errors import InvalidDemandError, InvalidRequestError


def test_the_documented_shape_parses_to_atomic_units() -> None:
    demand = parse_direct(direct_header("0.003"))
    assert demand is not None
    assert (demand.recipient, demand.amount, demand.chain_id, demand.token) == (
        RECIPIENT, 3000, 8453, BASE.usdc,
    )  # fmt: skip
    assert demand.network == "eip155:8453"


@pytest.mark.parametrize(
    ("text", "atomic"), [("1", 1_000_000), ("0.000001", 1), ("12.5", 12_500_000)]
)
def test_amounts_are_exact(text: str, atomic: int) -> None:
    demand = parse_direct(direct_header(text))
    assert demand is not None and demand.amount == atomic


@pytest.mark.parametrize(
    "value",
    ["1e3", "-1", "0.0000001", " 1", "1 ", "$1", "1.", ".5", "0x10", "", "NaN", 0.003, 3, None],
)
def test_anything_but_a_plain_decimal_string_is_refused(value: object) -> None:
    doc = {"recipient": RECIPIENT, "amount": value, "chainId": 8453, "token": BASE.usdc}
    with pytest.raises(InvalidDemandError):
        parse_direct(base64.b64encode(json.dumps(doc).encode()).decode())


def test_x402_and_undecodable_material_are_left_to_the_x402_decoder() -> None:
    assert parse_direct(demand_header()) is None
    assert parse_direct("") is None
    assert parse_direct("not base64!") is None
    assert parse_direct(base64.b64encode(b"[1, 2]").decode()) is None


@pytest.mark.parametrize(
    "overrides",
    [{"memo": "x"}, {"x402version": 2}, {"recipient": "0x12"}, {"token": None},
     {"chainId": True}, {"chainId": 8453.0}, {"chainId": -1}],
)  # fmt: skip
def test_unknown_keys_and_malformed_fields_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidDemandError):
        parse_direct(direct_header(**overrides))  # type: ignore[arg-type]


def test_duplicate_keys_are_refused_by_the_shared_strict_decoder() -> None:
    raw = f'{{"recipient":"{RECIPIENT}","recipient":"{RECIPIENT}","amount":"1","chainId":8453,"token":"{BASE.usdc}"}}'
    header = base64.b64encode(raw.encode()).decode()
    assert parse_direct(header) is None  # not readable as JSON, so Pay's x402 decoder refuses it
    with pytest.raises(InvalidDemandError, match="duplicate"):
        decode_demand(header, b"")


def test_the_fingerprint_covers_the_terms_only() -> None:
    plain = parse_direct(direct_header())
    described = parse_direct(direct_header(description="chat", resource={"url": "x"}))
    lower = parse_direct(direct_header(recipient=RECIPIENT.lower()))
    dearer = parse_direct(direct_header("0.004"))
    assert plain and described and lower and dearer
    assert plain.fingerprint == described.fingerprint == lower.fingerprint != dearer.fingerprint


def test_the_proof_header_defaults_and_is_configurable_per_host(tmp_path: Path) -> None:
    assert load_settings(tmp_path).proof_headers().for_host("any.example") == DEFAULT_PROOF_HEADER
    config = tmp_path / "walletd.toml"
    config.write_text(
        '[direct]\nproof_header = "X-Tx"\n[direct.hosts]\n"API.example" = "X-Api-Proof"\n'
    )
    headers = load_settings(tmp_path).proof_headers()
    assert (headers.for_host("api.example"), headers.for_host("other.example")) == (
        "X-Api-Proof", "X-Tx",
    )  # fmt: skip


@pytest.mark.parametrize(
    "body",
    ['[direct]\nproof_header = "Authorization"\n', '[direct]\nproof_header = "Bad Header"\n',
     '[direct]\nproof_header = 7\n', '[direct.hosts]\n"a.example" = "' + "X" * 33 + '"\n',
     '[direct]\nreceipt_timeout_seconds = 0\n', '[direct]\nmystery = 1\n'],
)  # fmt: skip
def test_bad_proof_header_config_is_refused(tmp_path: Path, body: str) -> None:
    (tmp_path / "walletd.toml").write_text(body)
    with pytest.raises(InvalidRequestError):
        load_settings(tmp_path)
