"""The fuzz properties, written once: pytest runs them bounded, the campaign runs them long.

Each :class:`Property` is a hypothesis strategy, a check, and optionally a harness
(state shared by the examples of one run, e.g. a real SQLite ledger).
:func:`run_property` wraps the check in ``@given`` with the settings it is handed
and returns how many inputs it tried; ``tests/adversarial/test_fuzz.py`` calls
it with the ``ci`` profile, ``python -m tests.adversarial.campaign`` in a loop
until its time is up. Every input is counted in :data:`FIGURES`.

Profiles (``WALLETD_FUZZ_PROFILE`` picks the one pytest uses; default ``ci``):
``ci`` 200 examples, ``dev`` 20 (a quick edit loop), ``campaign`` (chunked, no database).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import string
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from tests.adversarial.demands import URL, b64, decode_header, entry, v1_entry, v2_doc
from tests.adversarial.figures import FIGURES, outcome_of
from walletd.db import migrate, tables
from walletd.db.engine import make_engines, sqlite_url
from walletd.db.ledger import LedgerTx, NewPayment, Store
from walletd.domain import money, policy
from walletd.domain.budget import (
    SPAN_WINDOWS,
    WINDOWS,
    Budget,
    check_spend,
    window_starts,
    window_states,
)
from walletd.domain.demand import Demand, InvalidEntry, Requirement, decode_demand
from walletd.domain.eip3009 import Authorization, authorization_digest
from walletd.domain.money import MAX_AMOUNT, format_usd, parse_usd
from walletd.domain.networks import BASE, BASE_SEPOLIA
from walletd.domain.payment import PayCommand, PaymentStatus
from walletd.errors import (
    BudgetExceededError,
    InvalidDemandError,
    InvalidRequestError,
    RefusedError,
)
from walletd.service import admin
from walletd.service.tokens import hash_token
from walletd.service.wallet import WalletService

ENV_PROFILE = "WALLETD_FUZZ_PROFILE"
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile("dev", max_examples=20, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile(
    "campaign",
    max_examples=2_000,
    deadline=None,
    database=None,
    suppress_health_check=_HEALTH,
    print_blob=True,
)


def fuzz_settings() -> settings:
    """The settings pytest runs the properties with (profile ``ci`` unless overridden)."""
    return settings.get_profile(os.environ.get(ENV_PROFILE, "ci"))


# ---- strategies: JSON, demands, mutations -------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**270)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

_hex40 = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_cased: st.SearchStrategy[Callable[[str], str]] = st.sampled_from(
    [str.lower, str.upper, str]
)  # applied to the hex digits only


def _case_address(address: str, how: Callable[[str], str]) -> str:
    return "0x" + how(address[2:])


@st.composite
def valid_entries(draw: st.DrawFn, version: int) -> dict[str, Any]:
    """An entry walletd must pay (given budget): exact, Base, USDC, sane timeout."""
    amount = str(draw(st.integers(1, 15_000) | st.sampled_from([9_999, 10_000, 10_001, 12_000])))
    extra = draw(
        st.sampled_from(
            [
                {"name": "USD Coin", "version": "2"},
                {},
                None,
                {"name": "USD Coin"},
                {"assetTransferMethod": "eip3009", "name": "USD Coin", "version": "2"},
                {"paymentFlow": "authorization"},
            ]
        )
    )
    fields: dict[str, Any] = {
        "network": draw(st.sampled_from([BASE.caip2, BASE.v1_name])),
        "asset": _case_address(BASE.usdc, draw(_cased)),
        "payTo": _case_address(draw(_hex40.filter(lambda a: int(a, 16) != 0)), draw(_cased)),
        "maxTimeoutSeconds": draw(st.integers(1, 3600)),
        "extra": extra,
    }
    if version == 1:
        return v1_entry(amount, **fields)
    return entry(amount, **fields)


POOLS: dict[str, list[Any]] = {
    "amount": ["-1", "1.5", "0x10", "+5", "1e3", " 5", "\uff15", "00", "0", "9" * 80,
               str(2**256), str(2**256 - 1), str(2**63), "", "NaN", 5, 5.0, True],
    "maxAmountRequired": ["-1", "1.5", "0x10", "1e3", "9" * 80, 5],
    "network": ["eip155:1", BASE_SEPOLIA.caip2, BASE_SEPOLIA.v1_name, "base-mainnet",
                "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "eip155:8453 ", "", "x" * 300, None],
    "asset": ["0x" + "ab" * 20, BASE_SEPOLIA.usdc, "0x" + "00" * 20, BASE.usdc[:-1],
              BASE.usdc + "00", "USDC", None],
    "payTo": ["0x" + "00" * 20, "0x1234", "0x" + "zz" * 20, "", None, BASE.usdc.upper()],
    "scheme": ["upto", "EXACT", "exact ", "", "permit", None, 1],
    "maxTimeoutSeconds": [0, -1, 31_536_000, 3601, 300.0, "300", True, None, 2**64],
    "extra": [{"name": "USDC", "version": "2"}, {"name": "USD Coin", "version": "1"},
              {"assetTransferMethod": "permit2", "spender": "0x" + "ab" * 20},
              {"paymentFlow": "pull"}, [], "USD Coin",
              {"name": None}],
    "x402Version": [0, 3, "2", True, 2.0, None, -1, 2**64],
    "accepts": [[], {}, None, "exact", [[]], [None]],
    "resource": ["https://evil.test/", [], 1, None],
}  # fmt: skip
MUTATIONS = (
    "delete",
    "type_swap",
    "hostile_value",
    "hostile_every_entry",
    "swap_values",
    "dup_entry",
    "many_accepts",
)
_TOP_LEVEL = ("x402Version", "accepts", "resource")
CORRUPTIONS = ("none", "dup_key", "nan", "truncate", "bitflip", "wrong_container")


def _paths(doc: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every field a mutation may touch."""
    if not isinstance(doc, dict):
        return []
    paths: list[tuple[Any, Any]] = [(doc, k) for k in doc]
    accepts = doc.get("accepts")
    if isinstance(accepts, list):
        for e in accepts:
            if isinstance(e, dict):
                paths += [(e, k) for k in e]
                if isinstance(e.get("extra"), dict):
                    paths += [(e["extra"], k) for k in e["extra"]]
    return paths


def _mutate(draw: st.DrawFn, doc: Any, op: str) -> None:
    if op == "hostile_every_entry":  # one trick in every entry, so no good sibling is left
        accepts = doc.get("accepts") if isinstance(doc, dict) else None
        key = draw(st.sampled_from([k for k in POOLS if k not in _TOP_LEVEL]))
        value = draw(st.sampled_from(POOLS[key]))
        for e in accepts if isinstance(accepts, list) else []:
            if isinstance(e, dict) and (key in e or draw(st.booleans())):
                e[key] = copy.deepcopy(value)  # later ops mutate; the pool must stay as it was
        return
    paths = _paths(doc)
    if not paths:
        return
    where, key = draw(st.sampled_from(paths))
    if op == "delete":
        del where[key]
    elif op == "type_swap":
        value = where[key]
        swaps = [json_values]
        if isinstance(value, str) and value.isdigit():
            swaps.append(st.just(int(value)))
        if isinstance(value, int):
            swaps.append(st.just(str(value)))
        swaps.append(st.just([value]))
        where[key] = copy.deepcopy(draw(st.one_of(*swaps)))
    elif op == "hostile_value":
        pool = POOLS.get(str(key))
        where[key] = copy.deepcopy(draw(st.sampled_from(pool))) if pool else draw(json_scalars)
    elif op == "swap_values":
        other, other_key = draw(st.sampled_from(paths))
        where[key], other[other_key] = other[other_key], where[key]
    elif op in ("dup_entry", "many_accepts") and isinstance(doc.get("accepts"), list):
        accepts = doc["accepts"]
        if op == "dup_entry" and accepts:
            clone = json.loads(json.dumps(draw(st.sampled_from(accepts))))
            accepts.append(clone)
            _mutate(draw, {"accepts": [clone]}, "hostile_value")
        else:
            doc["accepts"] = accepts[:1] * draw(st.integers(0, 70))


def _corrupt(draw: st.DrawFn, text: str, how: str) -> str | bytes:
    if how == "dup_key" and text.startswith("{"):
        key = draw(st.sampled_from(["x402Version", "accepts", "amount", "payTo"]))
        return '{"' + key + '":' + json.dumps(draw(json_scalars)) + "," + text[1:]
    if how == "nan":
        return re.sub(r'"(amount|maxTimeoutSeconds)": [^,}]+', r'"\1": NaN', text, count=1)
    if how == "truncate":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    if how == "bitflip":
        data = bytearray(text.encode())
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    return text


@dataclass(frozen=True)
class DemandCase:
    """One generated demand as a server would send it."""

    family: str
    header: str
    body: bytes
    version: int
    valid: bool
    """True when no mutation or corruption was applied (walletd must pay it, budget allowing)."""


@st.composite
def demand_cases(draw: st.DrawFn) -> DemandCase:
    """A valid demand with 0-4 mutations and possibly one encoding corruption."""
    version = draw(st.sampled_from([2, 2, 1]))
    entries = draw(st.lists(valid_entries(version), min_size=1, max_size=3))
    doc: dict[str, Any] = (
        v2_doc(*entries) if version == 2 else {"x402Version": 1, "error": "", "accepts": entries}
    )
    ops = draw(st.lists(st.sampled_from(MUTATIONS), max_size=4))
    for op in ops:
        _mutate(draw, doc, op)
    corrupt = draw(st.integers(0, 4)) == 0  # one in five
    corruption = draw(st.sampled_from(CORRUPTIONS)) if corrupt else "none"
    text = json.dumps(doc)
    raw = _corrupt(draw, text, corruption)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    in_header = version == 2
    if corruption == "wrong_container":
        in_header = not in_header
    header = base64.b64encode(data).decode() if in_header else ""
    body = b"" if in_header else data
    parts = sorted(set(ops)) + ([corruption] if corruption != "none" else [])
    family = "mutation/" + "+".join(parts) if parts else f"valid/v{version}"
    return DemandCase(family, header, body, version, valid=not parts)


TRICKS: dict[str, st.SearchStrategy[Any]] = {
    "network": st.sampled_from(["eip155:1", BASE_SEPOLIA.caip2, BASE_SEPOLIA.v1_name,
                                "base-mainnet", "eip155:8453 ", "Base"]),
    "asset": st.sampled_from([BASE_SEPOLIA.usdc, "0x" + "00" * 20]) | _hex40,
    "scheme": st.sampled_from(["upto", "EXACT", "exact ", "permit", "exact\u200b"]),
    "payTo": st.sampled_from(["0x" + "00" * 20, "0X" + "00" * 20]),
    "amount": st.sampled_from(["0", "10001", str(2**63), str(2**256 - 1)]),
    "maxTimeoutSeconds": st.sampled_from([3601, 86_400, 31_536_000, 2**62]),
    "extra": st.sampled_from([
        {"name": "USDC", "version": "2"}, {"name": "USD Coin", "version": "1"},
        {"name": "USD Coin ", "version": "2"}, {"name": None}, {"version": 2},
        {"assetTransferMethod": "permit2", "permit2": "0x" + "ab" * 20},
        {"assetTransferMethod": "eip2612"}, {"assetTransferMethod": None, "paymentFlow": "pull"},
    ]),
}  # fmt: skip
"""Well-formed values that a rule (not the parser) must refuse."""


@st.composite
def policy_tricks(draw: st.DrawFn) -> DemandCase:
    """A valid demand whose every entry carries 1-2 well-formed tricks: never payable."""
    version = draw(st.sampled_from([2, 2, 1]))
    entries = draw(st.lists(valid_entries(version), min_size=1, max_size=3))
    keys = draw(st.lists(st.sampled_from(sorted(TRICKS)), min_size=1, max_size=2, unique=True))
    for e in entries:
        for key in keys:
            field_name = "maxAmountRequired" if key == "amount" and version == 1 else key
            e[field_name] = copy.deepcopy(draw(TRICKS[key]))
    doc: dict[str, Any] = (
        v2_doc(*entries) if version == 2 else {"x402Version": 1, "error": "", "accepts": entries}
    )
    text = json.dumps(doc).encode()
    header, body = (base64.b64encode(text).decode(), b"") if version == 2 else ("", text)
    return DemandCase("trick/" + "+".join(sorted(keys)), header, body, version, valid=False)


# ---- 1. the demand parser --------------------------------------------------------------

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def check_decoded(demand: Demand) -> None:
    """A demand that decoded holds only well-typed, bounded entries."""
    assert demand.version in (1, 2)
    assert 1 <= len(demand.entries) <= 64
    for e in demand.entries:
        if isinstance(e, InvalidEntry):
            assert isinstance(e.error, InvalidDemandError)
            continue
        assert isinstance(e, Requirement)
        assert type(e.amount) is int and 0 <= e.amount < 2**256
        assert _ADDRESS.fullmatch(e.asset) and _ADDRESS.fullmatch(e.pay_to)
        assert type(e.max_timeout_seconds) is int and e.max_timeout_seconds >= 1
        assert isinstance(e.scheme, str) and isinstance(e.network, str)
        assert isinstance(e.extra, dict)


def _parse(family: str, header: str, body: bytes) -> Demand | None:
    try:
        demand = decode_demand(header, body)
    except InvalidDemandError as err:
        FIGURES.demand(family, outcome_of(err))
        return None
    check_decoded(demand)
    FIGURES.demand(family, "PARSED")
    return demand


def check_parse_text(_: None, text: str) -> None:
    """Any string as the header."""
    _parse("parser/text", text, b"")


def check_parse_bytes(_: None, data: bytes) -> None:
    """Any bytes as the v1 body, and their base64 as the header."""
    _parse("parser/bytes_body", "", data)
    _parse("parser/bytes_b64", base64.b64encode(data).decode(), b"")


def check_parse_json(_: None, doc: Any) -> None:
    """Any JSON document (and x402-shaped ones), as header and as body."""
    try:
        text = json.dumps(doc)
    except (ValueError, RecursionError):
        return
    _parse("parser/json_b64", b64(doc), b"")
    _parse("parser/json_body", "", text.encode())


def check_parse_mutation(_: None, case: DemandCase) -> None:
    """Mutations of a valid demand; an unmutated one must decode with every entry valid."""
    demand = _parse(case.family, case.header, case.body)
    if case.valid:
        assert demand is not None
        assert all(isinstance(e, Requirement) for e in demand.entries)


x402_shaped = st.fixed_dictionaries(
    {"x402Version": st.sampled_from([1, 2]) | json_scalars,
     "accepts": st.lists(st.dictionaries(st.sampled_from(sorted(POOLS)), json_values), max_size=3)
     | json_values},
    optional={"resource": json_values},
)  # fmt: skip


# ---- 2. nothing that fails validation reaches the signer -------------------------------


class RecordingSigner:
    """A real key; remembers every digest it signed."""

    def __init__(self) -> None:
        from eth_account import Account

        self._account = Account.create()
        self.signed: list[tuple[bytes, bytes]] = []

    @property
    def address(self) -> str:
        return str(self._account.address)

    @property
    def calls(self) -> int:
        return len(self.signed)

    def sign_hash(self, digest: bytes) -> bytes:
        signature = bytes(self._account.unsafe_sign_hash(digest).signature)
        self.signed.append((digest, signature))
        return signature


PER_REQUEST = 10_000


def _scratch_dir() -> Path:
    """A ledger directory in RAM when the machine has one (fsync costs nothing there).

    The properties are about logic, not durability; crash tests use real disks.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")
    return Path(tempfile.mkdtemp(prefix="wd-fz-", dir=base))


def _oracle_ok(raw: Any, version: int) -> bool:
    """An independent reading of "walletd may pay this entry", written from the rules."""
    if not isinstance(raw, dict):
        return False
    amount = raw.get("amount" if version == 2 else "maxAmountRequired")
    timeout = raw.get("maxTimeoutSeconds")
    extra = raw.get("extra", {})
    extra = {} if extra is None else extra
    return (
        isinstance(amount, str)
        and re.fullmatch(r"[1-9][0-9]{0,77}", amount) is not None
        and int(amount) <= PER_REQUEST
        and raw.get("scheme") == "exact"
        and raw.get("network") in (BASE.caip2, BASE.v1_name)
        and isinstance(raw.get("asset"), str)
        and raw["asset"].lower() == BASE.usdc.lower()
        and isinstance(raw.get("payTo"), str)
        and _ADDRESS.fullmatch(raw["payTo"]) is not None
        and int(raw["payTo"], 16) != 0
        and type(timeout) is int
        and 1 <= timeout <= 3600
        and isinstance(extra, dict)
        and extra.get("assetTransferMethod") in (None, "eip3009")
        and extra.get("paymentFlow") in (None, "authorization")
        and all(extra[k] == v for k, v in (("name", "USD Coin"), ("version", "2")) if k in extra)
    )


@dataclass
class PayHarness:
    """WalletService over a real, migrated SQLite ledger, with a recording signer."""

    root: Path = field(default_factory=_scratch_dir)

    def __post_init__(self) -> None:
        self.engines = make_engines(sqlite_url(self.root))
        migrate.upgrade(self.engines.write)
        self.store = Store(self.engines)
        token = admin.add_client(self.store, "fuzz", frozenset({"pay", "read"}))
        admin.set_budget(self.store, "fuzz", admin.BudgetChange(per_request=PER_REQUEST))
        self.budget = Budget(per_request=PER_REQUEST)
        self.signer = RecordingSigner()
        self.service = WalletService(self.store, self.signer, policy.Limits())
        self.caller = self.service.authenticate(token)
        self.fresh = 0
        self.paid: list[tuple[str, DemandCase, str]] = []  # key, case, header value
        self.keys = count()

    def rows(self) -> int:
        with self.engines.read.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tables.Payment)).scalar_one())

    def close(self) -> None:
        self.engines.dispose()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class PayCase:
    demand: DemandCase
    replay: int | None
    """Replay the n-th earlier paid key (mod how many) instead of using a new key."""
    same_demand: bool
    """On a replay, resend that key's own demand (must be reused) instead of this one."""


pay_cases = st.builds(
    PayCase,
    demand_cases() | policy_tricks(),
    st.none() | st.none() | st.none() | st.integers(0, 10**6),
    st.booleans(),
)


def _ctx(h: PayHarness) -> policy.Context:
    return policy.Context("api.test", h.budget, Budget(), {}, {}, policy.Limits())


def _verify_paid(h: PayHarness, case: DemandCase, header_name: str, header_value: str,
                 amount: int, payee: str, network: str) -> None:  # fmt: skip
    """A success: one signature, of the pinned digest, for an entry every rule passes."""
    assert network == BASE.caip2
    demand = decode_demand(case.header, case.body)
    passing = []
    for e in demand.entries:
        if isinstance(e, Requirement):
            try:
                assert policy.check_requirement(e, _ctx(h), demand.version).network == BASE
            except RefusedError:
                continue
            passing.append(e)
    doc = decode_header(header_value)
    if header_name == "PAYMENT-SIGNATURE":
        echoed = [e for e in passing if dict(e.raw) == doc["accepted"]]
        assert echoed, "the echoed entry is not one that passes every rule"
        paid = echoed[0]
    else:
        assert (header_name, doc["network"]) == ("X-PAYMENT", BASE.v1_name)
        paid = next(e for e in passing if (e.amount, e.pay_to) == (amount, payee))
    assert paid.amount == min(e.amount for e in passing) == amount
    assert paid.pay_to == payee and paid.asset.lower() == BASE.usdc.lower()
    assert _oracle_ok(paid.raw, demand.version), paid.raw
    auth = doc["payload"]["authorization"]
    digest = authorization_digest(
        BASE,
        Authorization(
            from_address=h.signer.address,
            to_address=auth["to"],
            value=int(auth["value"]),
            valid_after=int(auth["validAfter"]),
            valid_before=int(auth["validBefore"]),
            nonce=bytes.fromhex(auth["nonce"][2:]),
        ),
    )
    assert (auth["from"], auth["to"], int(auth["value"])) == (h.signer.address, payee, amount)
    assert h.signer.signed[-1] == (digest, bytes.fromhex(doc["payload"]["signature"][2:]))


def check_pay(h: PayHarness, case: PayCase) -> None:
    """Refused: nothing signed, no row. Paid: exactly one signature, verified above."""
    d = case.demand
    if case.replay is not None and h.paid:
        key, first_case, first_header = h.paid[case.replay % len(h.paid)]
        d = first_case if case.same_demand else d
        family = "replay/" + ("same" if case.same_demand else d.family)
    else:
        key, first_header, family = f"fz-{next(h.keys)}", "", d.family
    calls, rows = h.signer.calls, h.rows()
    cmd = PayCommand(key, "POST", URL, d.header, d.body)
    try:
        receipt = h.service.pay(h.caller, cmd)
    except (RefusedError, InvalidRequestError) as err:
        FIGURES.demand(family, outcome_of(err))
        assert (h.signer.calls, h.rows()) == (calls, rows)
        if d.valid and not first_header and not isinstance(err, BudgetExceededError):
            raise AssertionError(f"a valid demand was refused: {err}") from err
        return
    FIGURES.demand(family, "REUSED" if receipt.reused else "ACCEPTED")
    assert not d.family.startswith("trick/") or receipt.reused, "a policy trick was paid"
    if receipt.reused:
        assert first_header and receipt.header_value == first_header
        assert (h.signer.calls, h.rows()) == (calls, rows)
    else:
        assert not first_header, "a replayed key signed again"
        assert (h.signer.calls, h.rows()) == (calls + 1, rows + 1)
        _verify_paid(h, d, receipt.header_name, receipt.header_value, receipt.amount,
                     receipt.payee, receipt.network)  # fmt: skip
        h.fresh += 1
        h.paid.append((key, d, receipt.header_value))
        FIGURES.add(signed=1)
    assert h.signer.calls == h.fresh


# ---- 3. the amount parser -------------------------------------------------------------


def _no_float(*_: Any) -> float:
    raise AssertionError("parse_usd took a float path")


def _parse_usd_strict(text: str) -> int:
    with mock.patch.object(money, "float", _no_float, create=True):
        value = parse_usd(text)
    assert type(value) is int and 0 <= value <= MAX_AMOUNT
    return value


def check_usd_any_text(_: None, text: str) -> None:
    """Any text: an int in range, or InvalidRequestError."""
    try:
        value = _parse_usd_strict(text)
    except InvalidRequestError:
        return
    assert parse_usd(format_usd(value)) == value


@dataclass(frozen=True)
class UsdCase:
    whole: int
    frac: str
    dollar: bool
    pad: str


usd_cases = st.builds(
    UsdCase,
    st.integers(0, 10**14),
    st.text(string.digits, max_size=8),
    st.booleans(),
    st.sampled_from(["", " ", "\t", "\n "]),
)


def check_usd_exact(_: None, case: UsdCase) -> None:
    """Decimal strings parse exactly (integer arithmetic as the oracle), or are refused."""
    text = f"{case.pad}{'$' if case.dollar else ''}{case.whole}"
    text += f".{case.frac}" if case.frac else ""
    expected = case.whole * 10**6 + int((case.frac or "0").ljust(6, "0")[:6])
    try:
        value = _parse_usd_strict(text + case.pad)
    except InvalidRequestError:
        assert len(case.frac) > 6 or expected > MAX_AMOUNT
        return
    assert len(case.frac) <= 6 and value == expected
    assert parse_usd(format_usd(value)) == value


def check_usd_round_trip(_: None, atomic: int) -> None:
    """format_usd then parse_usd is the identity on 0..MAX_AMOUNT."""
    assert _parse_usd_strict(format_usd(atomic)) == atomic


# ---- 4. budget windows ----------------------------------------------------------------

limits = st.none() | st.integers(0, MAX_AMOUNT)
budgets = st.builds(Budget, limits, limits, limits, limits, limits)


@dataclass(frozen=True)
class SpendCase:
    budget: Budget
    amounts: list[int]
    order: list[int]
    """A permutation of the accepted spends."""


@st.composite
def spend_cases(draw: st.DrawFn) -> SpendCase:
    amounts = draw(st.lists(st.integers(0, MAX_AMOUNT) | st.integers(0, 10**7), max_size=20))
    return SpendCase(draw(budgets), amounts, draw(st.permutations(range(len(amounts)))))


def _greedy(budget: Budget, amounts: list[int]) -> tuple[list[int], dict[str, int]]:
    spent = dict.fromkeys(SPAN_WINDOWS, 0)
    accepted = []
    for amount in amounts:
        over = [w for w in WINDOWS if (lim := budget.limit(w)) is not None
                and (0 if w == "per_request" else spent[w]) + amount > lim]  # fmt: skip
        refusal: BudgetExceededError | None = None
        try:
            check_spend(budget, spent, amount)
        except BudgetExceededError as err:
            refusal = err
        if refusal is not None:
            assert over and refusal.details["window"] == over[0]
            assert (refusal.limit, refusal.requested) == (budget.limit(over[0]), amount)
            continue
        assert not over
        accepted.append(amount)
        for w in SPAN_WINDOWS:
            spent[w] += amount
    return accepted, spent


def check_windows_pure(_: None, case: SpendCase) -> None:
    """Limited windows never exceed their limit nor go negative; order does not matter."""
    accepted, spent = _greedy(case.budget, case.amounts)
    for state in window_states(case.budget, spent):
        assert state.limit is not None and 0 <= state.spent <= state.limit <= MAX_AMOUNT
        assert state.remaining == state.limit - state.spent
    permuted = [accepted[i] for i in case.order if i < len(accepted)]
    again, spent_again = _greedy(case.budget, permuted)
    assert sorted(again) == sorted(accepted)  # every accepted set fits in any order
    assert window_states(case.budget, spent_again) == window_states(case.budget, spent)


NOW_MS = 1_767_225_600_000 + 17 * 86_400_000 + 12_345  # 2026-01-18, mid-month
_AGES = [0, 1, 59_999, 3_599_999, 3_600_000, 86_399_999, 86_400_000, 17 * 86_400_000 + 12_345,
         17 * 86_400_000 + 12_346, 40 * 86_400_000]  # fmt: skip


@dataclass(frozen=True)
class Spend:
    amount: int
    age_ms: int
    released: bool


@dataclass(frozen=True)
class LedgerCase:
    budget: Budget
    spends: list[Spend]
    order: list[int]


@st.composite
def ledger_cases(draw: st.DrawFn) -> LedgerCase:
    spends = draw(
        st.lists(
            st.builds(
                Spend,
                st.integers(1, 10**10),
                st.sampled_from(_AGES) | st.integers(0, 60 * 86_400_000),
                st.booleans(),
            ),
            max_size=12,
        )
    )
    budget = draw(st.builds(Budget, *[st.none() | st.integers(0, 2 * 10**10)] * 5))
    return LedgerCase(budget, spends, draw(st.permutations(range(len(spends)))))


class LedgerHarness:
    """One migrated SQLite ledger; each example uses two new clients."""

    def __init__(self) -> None:
        self.root = _scratch_dir()
        self.engines = make_engines(sqlite_url(self.root))
        migrate.upgrade(self.engines.write)
        self.store = Store(self.engines)
        self.n = count()
        self.global_sums = dict.fromkeys(SPAN_WINDOWS, 0)

    def clients(self) -> tuple[int, int]:
        """Two new clients, made in one transaction."""
        names = [f"c{next(self.n)}" for _ in range(2)]
        with self.store.write() as tx:
            for name in names:
                tx.add_client(name, hash_token(name), "pay", NOW_MS)
        with self.store.read() as tx:
            first, second = (tx.client_by_name(name).id for name in names)
        return first, second

    def close(self) -> None:
        self.engines.dispose()
        shutil.rmtree(self.root, ignore_errors=True)


def _insert(tx: LedgerTx, client_id: int, spend: Spend, n: int) -> None:
    pid = f"pay_fz{client_id}_{n}"
    created = NOW_MS - spend.age_ms
    new = NewPayment(
        id=pid, client_id=client_id, idempotency_key=f"k{n}", fingerprint="fp",
        amount=spend.amount, payee="0x" + "11" * 20, network=BASE.caip2, asset=BASE.usdc,
        payer="0x" + "22" * 20, method="POST", url=URL, host="api.test",
        nonce=f"0x{client_id:032x}{n:032x}", valid_after=0, valid_before=1,
        header_name="PAYMENT-SIGNATURE", header_value="h", labels={}, created_at_ms=created,
    )  # fmt: skip
    tx.add_payment(new, PaymentStatus.SIGNED, "fuzz")
    if spend.released:  # expired: its budget comes back
        tx.move(pid, PaymentStatus.SIGNED, PaymentStatus.EXPIRED, created + 1, "fuzz", {})


def expected_sums(spends: list[Spend]) -> dict[str, int]:
    starts = window_starts(NOW_MS)
    return {
        w: sum(s.amount for s in spends if not s.released and NOW_MS - s.age_ms >= starts[w])
        for w in SPAN_WINDOWS
    }


def check_ledger_sums(h: LedgerHarness, case: LedgerCase) -> None:
    """Spends fed through check_spend and the SQLite ledger: sums exact, in range, order-free."""
    first, second = h.clients()
    accepted: list[Spend] = []
    with h.store.write() as tx:
        for n, spend in enumerate(case.spends):
            try:
                check_spend(case.budget, tx.spent(first, NOW_MS), spend.amount)
            except BudgetExceededError:
                continue
            _insert(tx, first, spend, n)
            accepted.append(spend)
        for n in case.order:
            if n < len(accepted):
                _insert(tx, second, accepted[n], n)
    for w, v in expected_sums(accepted).items():
        h.global_sums[w] += 2 * v
    with h.store.read() as tx:
        one, two, everyone = (
            tx.spent(first, NOW_MS),
            tx.spent(second, NOW_MS),
            tx.spent(None, NOW_MS),
        )
    assert one == two == expected_sums(accepted)
    assert everyone == h.global_sums
    for sums in (one, everyone):
        assert all(0 <= v <= MAX_AMOUNT for v in sums.values())
    for state in window_states(case.budget, one):
        assert state.remaining is not None and state.remaining >= 0


# ---- the registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any, Any], None]
    harness: Callable[[], Any] | None = None
    ci_share: float = 1.0
    """Fraction of the profile's examples CI runs (the ledger property is ~70 ms each)."""


PROPERTIES: tuple[Property, ...] = (
    Property("parser_text", st.text(max_size=300), check_parse_text),
    Property("parser_bytes", st.binary(max_size=300), check_parse_bytes),
    Property("parser_json", json_values | x402_shaped, check_parse_json),
    Property("parser_mutations", demand_cases(), check_parse_mutation),
    Property("pay_never_signs_invalid", pay_cases, check_pay, PayHarness),
    Property("usd_any_text", st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
             | st.from_regex(r"\s*\$?[-+]?[0-9\u0660-\u0669]*[.,]?[0-9]*([eE][-+]?[0-9]+)?\s*", fullmatch=True),
             check_usd_any_text),
    Property("usd_exact", usd_cases, check_usd_exact),
    Property("usd_round_trip", st.integers(0, MAX_AMOUNT), check_usd_round_trip),
    Property("windows_pure", spend_cases(), check_windows_pure),
    Property("windows_ledger", ledger_cases(), check_ledger_sums, LedgerHarness, ci_share=0.5),
)  # fmt: skip
BY_NAME: Mapping[str, Property] = {p.name: p for p in PROPERTIES}


def run_property(prop: Property, run_settings: settings, harness: Any = None) -> int:
    """Run ``prop`` under ``run_settings``; return how many inputs were tried.

    A harness is made (and closed) here unless one is handed in.
    """
    own = harness is None and prop.harness is not None
    if own:
        harness = prop.harness()  # type: ignore[misc]
    tried = 0

    @run_settings
    @given(prop.strategy)
    def property_(example: Any) -> None:
        nonlocal tried
        tried += 1
        prop.check(harness, example)

    try:
        property_()
    finally:
        FIGURES.example(prop.name, tried)
        if own:
            harness.close()
    return tried
