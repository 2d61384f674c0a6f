"""Hostile servers: malicious 402 demands against one running daemon, through the real client.

Every row of :data:`CASES` is a demand a hostile server could send. Each must be
refused with exactly the expected error class and reason (and the rule for
POLICY_DENIED, the window for BUDGET_EXCEEDED), and afterwards nothing may have
been signed or counted: GetBudget's spent and ListPayments' rows are unchanged.
The one positive case (50 ``accepts``, one good) must pay exactly that entry.

The daemon is shared by the module, so checks compare before and after. The
table of (case, reason) is printed at the end of the module (``pytest -s``) and
every demand is counted in :data:`tests.adversarial.figures.FIGURES`.

Client-side tricks (redirects) run the real ``WalletdAuth`` against the same
daemon on an ``httpx.MockTransport`` server: ``tests/client/test_auth_flow.py``
already covers a 307 to another host *from the helper client*; here are the
cases it leaves out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.adversarial.demands import (
    DROP,
    GOOD_EXTRA,
    NOT_USDC,
    OTHER_PAY_TO,
    PAY_TO,
    URL,
    ZERO,
    b64,
    decode_header,
    entry,
    raw_b64,
    v1_body,
    v1_entry,
    v2_doc,
)
from tests.adversarial.figures import FIGURES, outcome_of
from tests.plugins.adversarial import add_clients
from tests.plugins.daemon import Daemon, WalletHome
from walletd.client import WalletClient, WalletdAuth, http_client
from walletd.domain.demand import MAX_ACCEPTS, MAX_DEMAND_BYTES
from walletd.domain.money import format_usd
from walletd.domain.networks import BASE, BASE_SEPOLIA
from walletd.errors import (
    BudgetExceededError,
    IdempotencyConflictError,
    InvalidDemandError,
    InvalidRequestError,
    PolicyDeniedError,
    WalletdError,
)
from walletd.service import admin

PER_REQUEST = 10_000  # $0.01
DAILY = 1_000_000  # $1


@dataclass(frozen=True)
class Case:
    """One hostile demand and the exact refusal it must get."""

    name: str
    family: str
    error: type[WalletdError]
    detail: str = ""
    """The rule (POLICY_DENIED) or window (BUDGET_EXCEEDED); "" for the others."""
    says: str = ""
    """A fragment the error message must contain (pins *which* check refused)."""
    header: str = ""
    body: bytes = b""

    @property
    def reason(self) -> str:
        return f"{self.error.reason}/{self.detail}" if self.detail else self.error.reason


def _policy(name: str, rule: str, header: str = "", body: bytes = b"") -> Case:
    return Case(name, "policy", PolicyDeniedError, rule, header=header, body=body)


def _invalid(name: str, says: str, header: str = "", body: bytes = b"") -> Case:
    return Case(name, "malformed", InvalidDemandError, says=says, header=header, body=body)


def _one(**overrides: Any) -> str:
    """A v2 header with one entry, fields overridden."""
    return b64(v2_doc(entry(**overrides)))


def _padded_over_limit() -> str:
    """A well-formed demand whose header value is just over MAX_DEMAND_BYTES."""
    base = len(b64(v2_doc(resource={"url": URL, "description": "", "mimeType": "text/plain"})))
    filler = "x" * ((MAX_DEMAND_BYTES - base) * 3 // 4 + 3)
    value = b64(v2_doc(resource={"url": URL, "description": filler, "mimeType": "text/plain"}))
    assert MAX_DEMAND_BYTES < len(value) <= MAX_DEMAND_BYTES + 8
    return value


def _nesting_bomb() -> str:
    depth = 20_000  # well under the size limit, far over Python's recursion limit
    return raw_b64('{"x402Version":2,"resource":' + "[" * depth + "]" * depth + "}")


def _entry_json(**raw_fields: str) -> str:
    """One entry as hand-written JSON: ``raw_fields`` values are inserted verbatim."""
    good = {k: json.dumps(v) for k, v in entry().items()}
    fields = ",".join(f'"{k}":{v}' for k, v in {**good, **raw_fields}.items())
    return "{" + fields + "}"


def _doc_json(entry_text: str, top: str = '"x402Version":2') -> str:
    return raw_b64("{" + top + ',"accepts":[' + entry_text + "]}")


CASES: list[Case] = [
    # ---- well-formed, refused by a policy rule ------------------------------------
    _policy("wrong_chain_ethereum", "network", _one(network="eip155:1")),
    _policy("wrong_chain_base_sepolia", "network",
            _one(network=BASE_SEPOLIA.caip2, asset=BASE_SEPOLIA.usdc)),
    _policy("asset_not_usdc", "asset", _one(asset=NOT_USDC)),
    _policy("asset_sepolia_usdc_on_base", "asset", _one(asset=BASE_SEPOLIA.usdc)),
    _policy("eip712_wrong_name", "eip712_domain", _one(extra={"name": "USDC", "version": "2"})),
    _policy("eip712_wrong_version", "eip712_domain",
            _one(extra={"name": "USD Coin", "version": "1"})),
    _policy("eip712_name_null", "eip712_domain", _one(extra={"name": None, "version": "2"})),
    _policy("unknown_scheme", "scheme", _one(scheme="exact-v9")),
    _policy("upto_without_facilitator", "upto_facilitator", _one(scheme="upto")),
    _policy("upto_on_x402_v1", "scheme",
            body=v1_body(v1_entry(scheme="upto",
                                  extra={**GOOD_EXTRA, "facilitatorAddress": PAY_TO}))),
    _policy("upto_naming_another_proxy", "permit2_address",
            _one(scheme="upto", extra={**GOOD_EXTRA, "facilitatorAddress": PAY_TO,
                                       "spender": OTHER_PAY_TO})),
    _policy("scheme_case_trick", "scheme", _one(scheme="EXACT")),
    _policy("permit2_naming_another_spender", "permit2_address",
            _one(extra={"assetTransferMethod": "permit2", "spender": OTHER_PAY_TO,
                        **entry()["extra"]})),
    _policy("permit2_naming_another_permit2", "permit2_address",
            _one(extra={"assetTransferMethod": "permit2", "permit2Address": OTHER_PAY_TO,
                        **entry()["extra"]})),
    _policy("permit2_proxy_not_a_string", "permit2_address",
            _one(extra={"assetTransferMethod": "permit2", "proxy": 1, **entry()["extra"]})),
    _policy("permit2_on_x402_v1", "transfer_method",
            body=v1_body(v1_entry(extra={"assetTransferMethod": "permit2", **GOOD_EXTRA}))),
    _policy("unknown_transfer_method", "transfer_method",
            _one(extra={"assetTransferMethod": "eip2612", **entry()["extra"]})),
    _policy("unknown_payment_flow", "payment_flow",
            _one(extra={"paymentFlow": "pull", **entry()["extra"]})),
    _policy("decimals_disagree_with_table", "decimals",
            _one(extra={**entry()["extra"], "decimals": 18})),
    _policy("network_pinned_but_not_enabled_celo", "network",
            _one(network="eip155:42220", asset="0xcebA9300f2b948710d2653dD7B07f33A8B32118C")),
    _policy("zero_pay_to", "payee_zero", _one(payTo=ZERO)),
    _policy("zero_amount", "amount_positive", _one(amount="0")),
    _policy("validity_of_a_year", "validity", _one(maxTimeoutSeconds=365 * 24 * 3600)),
    _policy("v1_unknown_network_name", "network",
            body=v1_body(v1_entry(network="base-mainnet"))),
    _policy("v1_network_caip2_of_sepolia", "network",
            body=v1_body(v1_entry(network="base-sepolia", asset=BASE_SEPOLIA.usdc))),
    # ---- well-formed and passing the rules, but over a cap --------------------------
    Case("amount_over_per_request_cap", "budget", BudgetExceededError, "per_request",
         header=_one(amount=str(PER_REQUEST + 1))),
    Case("amount_uint256_max", "budget", BudgetExceededError, "per_request",
         header=_one(amount=str(2**256 - 1))),
    Case("cheap_hostile_sibling_then_over_cap", "budget", BudgetExceededError, "per_request",
         says=f"requested {format_usd(PER_REQUEST * 2)} USD",
         header=b64(v2_doc(entry("1", asset=NOT_USDC), entry(str(PER_REQUEST * 2))))),
    # ---- malformed: refused while decoding ------------------------------------------
    _invalid("amount_negative", "decimal integer string", _one(amount="-3000")),
    _invalid("amount_decimal", "decimal integer string", _one(amount="3000.5")),
    _invalid("amount_hex", "decimal integer string", _one(amount="0xbb8")),
    _invalid("amount_plus_prefixed", "decimal integer string", _one(amount="+3000")),
    _invalid("amount_exponent", "decimal integer string", _one(amount="3e3")),
    _invalid("amount_huge", "decimal integer string", _one(amount="9" * 80)),
    _invalid("amount_over_uint256", "exceeds uint256", _one(amount=str(2**256))),
    _invalid("amount_numeric", "decimal integer string", _one(amount=3000)),
    _invalid("amount_leading_zero", "decimal integer string", _one(amount="03000")),
    _invalid("amount_fullwidth_digits", "decimal integer string", _one(amount="\uff13\uff10\uff10\uff10")),
    _invalid("amount_trailing_newline", "decimal integer string", _one(amount="3000\n")),
    _invalid("amount_missing", "decimal integer string", _one(amount=DROP)),
    _invalid("amount_nan", "non-standard JSON constant NaN", _doc_json(_entry_json(amount="NaN"))),
    _invalid("timeout_infinity", "non-standard JSON constant Infinity",
             _doc_json(_entry_json(maxTimeoutSeconds="Infinity"))),
    _invalid("timeout_zero", "maxTimeoutSeconds", _one(maxTimeoutSeconds=0)),
    _invalid("timeout_float", "maxTimeoutSeconds", _one(maxTimeoutSeconds=300.0)),
    _invalid("timeout_bool", "maxTimeoutSeconds", _one(maxTimeoutSeconds=True)),
    _invalid("pay_to_malformed", "payTo is not a 0x address", _one(payTo="0x1234")),
    _invalid("pay_to_not_hex", "payTo is not a 0x address", _one(payTo="0x" + "zz" * 20)),
    _invalid("pay_to_with_whitespace", "payTo is not a 0x address", _one(payTo=f" {PAY_TO}")),
    _invalid("extra_not_object", "extra is not an object", _one(extra=["USD Coin", "2"])),
    _invalid("x402_version_unknown", "unsupported x402Version", b64(v2_doc(x402Version=3))),
    _invalid("x402_version_string", "unsupported x402Version", b64(v2_doc(x402Version="2"))),
    _invalid("x402_version_bool", "unsupported x402Version", b64(v2_doc(x402Version=True))),
    _invalid("not_base64", "not valid base64", "%%%not-base64%%%"),
    _invalid("base64_not_json", "not valid UTF-8 JSON", raw_b64(b"<html>402</html>")),
    _invalid("base64_not_utf8", "not valid UTF-8 JSON", raw_b64(b'{"x402Version":2,"\xff":1}')),
    _invalid("json_not_object", "not a JSON object", b64([v2_doc()])),
    _invalid("json_string", "not a JSON object", b64("x402Version")),
    _invalid("header_over_size_limit", "demand too large", _padded_over_limit()),
    _invalid("body_over_size_limit", "demand too large",
             body=v1_body(v1_entry(description="x" * MAX_DEMAND_BYTES))),
    _invalid("empty_accepts", "no accepts", b64(v2_doc(accepts=[]))),
    _invalid("accepts_not_a_list", "no accepts", b64(v2_doc(accepts=entry()))),
    _invalid("accepts_over_limit", f"> {MAX_ACCEPTS}",
             b64(v2_doc(*[entry() for _ in range(MAX_ACCEPTS + 1)]))),
    _invalid("duplicate_pay_to_key", "duplicate JSON key 'payTo'",
             _doc_json(_entry_json(payTo=json.dumps(PAY_TO)) [:-1]
                       + f',"payTo":{json.dumps(OTHER_PAY_TO)}}}')),
    _invalid("duplicate_version_key", "duplicate JSON key 'x402Version'",
             _doc_json(_entry_json(), top='"x402Version":1,"x402Version":2')),
    _invalid("resource_not_object", "resource is not an object",
             b64(v2_doc(resource="https://evil.test/"))),
    _invalid("nesting_bomb", "not valid UTF-8 JSON", _nesting_bomb()),
    _invalid("no_demand_at_all", "no demand"),
]  # fmt: skip

RESULTS: list[tuple[str, str, str]] = []
"""(case, family, reason) of every demand the module sent, for the printed table."""


def table_markdown(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| # | case | family | reason |", "|---|---|---|---|"]
    lines += [f"| {i} | {c} | {f} | {r} |" for i, (c, f, r) in enumerate(rows, 1)]
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Iterator[None]:
    yield
    if RESULTS:
        print(f"\n\nHostile demands ({len(RESULTS)}):\n{table_markdown(RESULTS)}")


@pytest.fixture(scope="module")
def victim(module_wallet_home: WalletHome, module_daemon: Daemon) -> Iterator[WalletClient]:
    """The client every hostile demand is sent for: $0.01 per request, $1 a day."""
    home = module_wallet_home
    budget = admin.BudgetChange(per_request=PER_REQUEST, daily=DAILY)
    token = add_clients(home, {"victim": "pay,read"}, budget)["victim"]
    with WalletClient(socket=home.socket, token_file=token, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class Ledger:
    spent: dict[str, int]
    rows: int


def _ledger(wallet: WalletClient) -> Ledger:
    spent = {w.window: w.spent for w in wallet.get_budget().windows}
    return Ledger(spent, len(wallet.list_payments(limit=1000)))


def _record(name: str, family: str, outcome: str) -> None:
    FIGURES.demand(f"hostile/{family}/{name}", outcome)
    RESULTS.append((name, family, outcome))


def test_the_table_has_every_family_the_issue_asks_for() -> None:
    names = {c.name for c in CASES}
    assert len(CASES) >= 25 and len(names) == len(CASES)
    assert {c.family for c in CASES} == {"policy", "budget", "malformed"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_demand_is_refused_precisely_and_nothing_is_signed(
    victim: WalletClient, case: Case
) -> None:
    before = _ledger(victim)
    with pytest.raises(WalletdError) as info:
        victim.pay(f"hostile-{case.name}", "POST", URL, payment_required=case.header,
                   body=case.body)  # fmt: skip
    err = info.value
    _record(case.name, case.family, outcome_of(err))
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    assert err.reason == case.error.reason
    if case.error is PolicyDeniedError:
        assert err.details["rule"] == case.detail, err
    if case.error is BudgetExceededError:
        assert err.details["window"] == case.detail, err
    assert case.says in err.message, err.message
    assert _ledger(victim) == before


def _rescheme(header: str, scheme: str) -> str:
    """The same v2 demand with every entry paid as Permit2 exact or as upto."""
    doc = json.loads(base64.b64decode(header))
    for e in doc["accepts"]:
        if isinstance(e, dict) and isinstance(e.get("extra", {}), dict):
            extra = e.setdefault("extra", {})
            extra["assetTransferMethod"] = "permit2"
            if scheme == "upto":
                e["scheme"] = e["scheme"] if e.get("scheme") != "exact" else "upto"
                extra["facilitatorAddress"] = OTHER_PAY_TO
    return b64(doc)


_SCHEME_SPECIFIC = ("scheme", "transfer_method", "permit2", "upto")
RESCHEMED = [
    pytest.param(case, scheme, id=f"{scheme}-{case.name}")
    for scheme in ("permit2", "upto")
    for case in CASES
    if case.family in ("policy", "budget") and case.header
    and not any(word in case.name or word == case.detail for word in _SCHEME_SPECIFIC)
]  # fmt: skip


@pytest.mark.parametrize(("case", "scheme"), RESCHEMED)
def test_hostile_demand_as_permit2_or_upto_is_refused_by_the_same_rule(
    victim: WalletClient, case: Case, scheme: str
) -> None:
    before = _ledger(victim)
    with pytest.raises(WalletdError) as info:
        victim.pay(f"hostile-{scheme}-{case.name}", "POST", URL,
                   payment_required=_rescheme(case.header, scheme))  # fmt: skip
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    detail = err.details.get("rule") or err.details.get("window")
    assert detail == case.detail, err
    assert _ledger(victim) == before


def test_fifty_accepts_pay_the_only_entry_that_passes_policy(victim: WalletClient) -> None:
    hostile: list[Callable[[str], dict[str, Any]]] = [
        lambda a: entry(a, network="eip155:1"),
        lambda a: entry(a, asset=NOT_USDC),
        lambda a: entry(a, extra={"name": "USDC", "version": "2"}),
        lambda a: entry(a, extra={"name": "USD Coin", "version": "1"}),
        lambda a: entry(a, scheme="upto"),
        lambda a: entry(a, payTo=ZERO),
        lambda a: entry(a, maxTimeoutSeconds=365 * 24 * 3600),
        lambda a: entry(a, extra={"assetTransferMethod": "permit2", "spender": OTHER_PAY_TO}),
        lambda a: entry(a, payTo="0x1234"),
        lambda a: entry(f"-{a}"),
        lambda a: entry(int(a)),
        lambda a: entry(a, network=BASE_SEPOLIA.caip2, asset=BASE_SEPOLIA.usdc),
        lambda a: entry("0"),
        lambda a: {"scheme": "exact", "amount": a},
    ]
    good_amount, good_payee = 4321, OTHER_PAY_TO
    entries = [hostile[i % len(hostile)](str(i + 1)) for i in range(49)]  # all cheaper
    good = entry(str(good_amount), payTo=good_payee)
    entries.insert(31, good)
    assert len(entries) == 50
    before = _ledger(victim)
    receipt = victim.pay(
        "hostile-fifty-accepts", "POST", URL, payment_required=b64(v2_doc(*entries))
    )
    _record("fifty_accepts_one_passes", "positive", outcome_of(None))
    assert (receipt.amount, receipt.payee, receipt.network) == (good_amount, good_payee, BASE.caip2)
    paid = decode_header(receipt.header_value)
    assert paid["accepted"] == good
    assert paid["payload"]["authorization"]["to"] == good_payee
    assert paid["payload"]["authorization"]["value"] == str(good_amount)
    after = _ledger(victim)
    assert after.rows == before.rows + 1
    assert all(after.spent[w] == before.spent[w] + good_amount for w in ("daily",))
    (row,) = [p for p in victim.list_payments(limit=1000) if p.payment_id == receipt.payment_id]
    assert (row.amount, row.payee) == (good_amount, good_payee)


def test_pay_to_swapped_on_a_retry_under_the_same_key_is_a_conflict(
    victim: WalletClient,
) -> None:
    key = "hostile-swap-retry"
    before = _ledger(victim)
    first = victim.pay(key, "POST", URL, payment_required=b64(v2_doc(entry("2500"))))
    swapped = b64(v2_doc(entry("2500", payTo=OTHER_PAY_TO)))
    with pytest.raises(WalletdError) as info:
        victim.pay(key, "POST", URL, payment_required=swapped)
    _record("pay_to_swapped_on_retry", "idempotency", outcome_of(info.value))
    assert type(info.value) is IdempotencyConflictError
    assert info.value.details["payment_id"] == first.payment_id
    again = victim.pay(key, "POST", URL, payment_required=b64(v2_doc(entry("2500"))))
    assert (again.reused, again.header_value) == (True, first.header_value)
    after = _ledger(victim)
    assert after.rows == before.rows + 1
    assert after.spent["daily"] == before.spent["daily"] + 2500
    mine = [p for p in victim.list_payments(limit=1000) if p.payment_id == first.payment_id]
    assert [(p.payee, p.amount) for p in mine] == [(PAY_TO, 2500)]


# ---- client side: redirects ---------------------------------------------------------

API, EVIL = "http://api.test", "http://evil.test"


class RedirectingServer:
    """``api.test`` asks for payment; ``evil.test`` asks for its own (to OTHER_PAY_TO).

    ``before_402``: api.test redirects to evil.test straight away.
    ``after_payment``: api.test answers the *paid* request with a 307 to evil.test.
    """

    def __init__(self, *, before_402: bool = False, after_payment: bool = False) -> None:
        self.before_402 = before_402
        self.after_payment = after_payment
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        paid = any(h in request.headers for h in ("payment-signature", "x-payment"))
        self.seen.append((request.url.host, paid))
        if request.url.host == "api.test":
            if self.before_402 or (paid and self.after_payment):
                return httpx.Response(307, headers={"Location": EVIL + "/collect"})
            if paid:
                return httpx.Response(200, json={"ok": True})
            return httpx.Response(402, headers={"PAYMENT-REQUIRED": b64(v2_doc())}, json={})
        if paid:
            return httpx.Response(200, json={"stolen": True})
        demand = b64(v2_doc(entry("9000", payTo=OTHER_PAY_TO)))
        return httpx.Response(402, headers={"PAYMENT-REQUIRED": demand}, json={})

    def evil_got_a_payment(self) -> bool:
        return any(host == "evil.test" and paid for host, paid in self.seen)


def _helper_client(auth: WalletdAuth, server: RedirectingServer) -> httpx.Client:
    client = http_client(auth=auth, transport=httpx.MockTransport(server))
    client.follow_redirects = True  # even when a caller turns redirects on
    return client


def _plain_client(auth: WalletdAuth, server: RedirectingServer) -> httpx.Client:
    return httpx.Client(auth=auth, transport=httpx.MockTransport(server), follow_redirects=True)


def _openai_default_client(auth: WalletdAuth, server: RedirectingServer) -> httpx.Client:
    # What a user of WalletdAuth's docstring ("or the openai SDK") would write.
    return openai.DefaultHttpxClient(auth=auth, transport=httpx.MockTransport(server))


def test_redirect_to_another_host_after_paying_never_carries_or_pays_again(
    victim: WalletClient,
) -> None:
    """The guarded helper client drops the payment header on a cross-host hop."""
    server = RedirectingServer(after_payment=True)
    before = _ledger(victim)
    with _helper_client(WalletdAuth(base_url=API, wallet=victim), server) as http:
        response = http.post(API + "/v1/chat", json={})
    leaked = server.evil_got_a_payment()
    _record("redirect_after_paid_402[http_client_helper]", "redirect",
            "HEADER_LEAKED" if leaked else "NOT_CARRIED")  # fmt: skip
    assert not leaked, server.seen
    after = _ledger(victim)
    assert after.rows == before.rows + 1  # api.test's demand only; evil's 402 is never paid
    assert after.spent["daily"] == before.spent["daily"] + 3000
    assert (response.url.host, response.status_code) == ("evil.test", 402)


@pytest.mark.parametrize(
    "make_client",
    [pytest.param(_plain_client, id="plain_httpx"),
     pytest.param(_openai_default_client, id="openai_default")],
)  # fmt: skip
def test_client_that_may_forward_the_header_on_a_redirect_is_never_paid_through(
    request: pytest.FixtureRequest,
    victim: WalletClient,
    make_client: Callable[[WalletdAuth, RedirectingServer], httpx.Client],
) -> None:
    """httpx follows redirects inside one auth step, so an unguarded client is refused."""
    server = RedirectingServer(after_payment=True)
    before = _ledger(victim)
    with (
        make_client(WalletdAuth(base_url=API, wallet=victim), server) as http,
        pytest.raises(InvalidRequestError, match="redirect"),
    ):
        http.post(API + "/v1/chat", json={})
    _record(f"redirect_after_paid_402[{request.node.callspec.id}]", "redirect",
            "REFUSED_UNGUARDED_CLIENT")  # fmt: skip
    assert not server.evil_got_a_payment(), server.seen
    assert _ledger(victim) == before


@pytest.mark.parametrize("make_client", [_helper_client, _plain_client, _openai_default_client])
@pytest.mark.parametrize("base_url", [API, None], ids=["base_url", "any_origin"])
def test_redirect_to_another_host_before_the_402_is_never_paid(
    request: pytest.FixtureRequest,
    victim: WalletClient,
    make_client: Callable[[WalletdAuth, RedirectingServer], httpx.Client],
    base_url: str | None,
) -> None:
    server = RedirectingServer(before_402=True)
    before = _ledger(victim)
    with make_client(WalletdAuth(base_url=base_url, wallet=victim), server) as http:
        response = http.get(API + "/v1/models")
    name = f"redirect_before_402[{request.node.callspec.id}]"
    _record(name, "redirect", "NOT_PAID" if _ledger(victim) == before else "PAID")
    assert response.status_code == 402 and response.url.host == "evil.test"
    assert not server.evil_got_a_payment()
    assert _ledger(victim) == before
