"""Human approval above a threshold, against one real daemon and the real CLI.

The module shares one daemon (``module_daemon``): each test uses its own
idempotency keys and compares the budget before and after, never a fresh ledger.
Clients: ``svc`` pays (threshold 0.002 USD, so the 0.003 USD demand is held),
``alice`` only approves, ``selfish`` pays and approves (and so may never decide
its own payments), ``reader`` only reads.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.plugins.adversarial import add_clients
from tests.plugins.daemon import Daemon, WalletHome, demand_header
from walletd.client import AsyncWalletClient, WalletClient
from walletd.client._errors import map_rpc_errors
from walletd.domain.approval import Approval
from walletd.domain.payment import PaymentStatus, PayReceipt
from walletd.errors import (
    ApprovalClosedError,
    ApprovalDeniedError,
    ApprovalRequiredError,
    NotFoundError,
    PermissionDeniedError,
    WalletdError,
)
from walletd.v1 import wallet_pb2 as pb, wallet_pb2_grpc as pb_grpc

URL = "http://127.0.0.1:9/v1/chat/completions"
DEMAND = demand_header("3000", url=URL)


@dataclass
class Desk:
    home: WalletHome
    svc: WalletClient
    alice: WalletClient
    selfish: WalletClient
    reader: WalletClient
    tokens: dict[str, Path]

    def daily_spent(self) -> int:
        return next(w.spent for w in self.svc.get_budget().windows if w.window == "daily")

    def held(self, key: str, demand: str = DEMAND) -> ApprovalRequiredError:
        with pytest.raises(ApprovalRequiredError) as caught:
            self.svc.pay(key, "POST", URL, payment_required=demand)
        return caught.value


@pytest.fixture(scope="module")
def desk(module_wallet_home: WalletHome, module_daemon: Daemon) -> Iterator[Desk]:
    home = module_wallet_home
    tokens = add_clients(
        home, {"svc": "pay,read", "alice": "approve", "selfish": "pay,read,approve",
               "reader": "read"},
    )  # fmt: skip
    # The real operator command, with the daemon running.
    out = home.admin("budget", "set", "svc", "--approve-above", "0.002", "--json")
    assert json.loads(out.stdout)["approve_above"] == 2000
    home.admin("budget", "set", "selfish", "--approve-above", "0.002")

    def client(name: str) -> WalletClient:
        return WalletClient(socket=home.socket, token_file=tokens[name], timeout=30)

    svc, alice, selfish, reader = (client(n) for n in ("svc", "alice", "selfish", "reader"))
    clients = [svc, alice, selfish, reader]
    yield Desk(home, svc, alice, selfish, reader, tokens=tokens)
    for c in clients:
        c.close()


def test_payment_above_threshold_is_held_with_its_facts_and_reserved(desk: Desk) -> None:
    before = desk.daily_spent()
    err = desk.held("held-facts")
    assert err.approval_id.startswith("apr_")
    assert (err.amount_usd, err.payee.lower(), err.url) == (
        "0.003000", "0x90f79bf6eb2c4f870365e96051896f3ac51fb01a", URL,
    )  # fmt: skip
    assert err.expires_at_ms > time.time() * 1000
    assert f"awaiting approval {err.approval_id}" in err.message
    assert desk.daily_spent() == before + 3000  # reserved while it waits
    again = desk.held("held-facts")  # a retry while pending: the same approval, nothing new
    assert again.approval_id == err.approval_id
    assert desk.daily_spent() == before + 3000
    (row,) = [p for p in desk.svc.list_payments() if p.payment_id == err.payment_id]
    assert row.status == PaymentStatus.AWAITING_APPROVAL
    (listed,) = [
        a for a in desk.alice.list_approvals("pending") if a.approval_id == err.approval_id
    ]
    assert (listed.client, listed.amount, listed.threshold) == ("svc", 3000, 2000)


def test_approving_gives_exactly_one_signature_to_concurrent_retries(desk: Desk) -> None:
    err = desk.held("held-approve")
    out = desk.home.run(
        "approve", err.approval_id, "--note", "ok for the demo", "--json",
        "--socket", str(desk.home.socket), "--token-file", str(desk.tokens["alice"]),
    )  # fmt: skip
    decided = json.loads(out.stdout)["approval"]
    assert (decided["status"], decided["decided_by"], decided["note"]) == (
        "approved", "alice", "ok for the demo",
    )  # fmt: skip
    receipts: list[object] = []

    def retry() -> None:
        try:
            receipts.append(desk.svc.pay("held-approve", "POST", URL, payment_required=DEMAND))
        except WalletdError as exc:
            receipts.append(exc)

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in receipts), receipts
    headers = {r.header_value for r in receipts}  # type: ignore[attr-defined]
    assert len(headers) == 1 and "" not in headers  # one authorization, ever
    assert sorted(r.reused for r in receipts) == [False] + [True] * 7  # type: ignore[attr-defined]
    assert {r.payment_id for r in receipts} == {err.payment_id}  # type: ignore[attr-defined]
    with pytest.raises(ApprovalClosedError) as closed:  # decided once: no second decision
        desk.alice.deny(err.approval_id)
    assert closed.value.status == "approved"
    shown = json.loads(desk.home.admin("payment", "show", err.payment_id, "--json").stdout)
    events = shown["payment"]["events"]
    assert [e["status"] for e in events] == ["awaiting_approval", "approved", "signed"]
    assert events[1]["data"]["decided_by"] == "alice"
    assert events[1]["data"]["note"] == "ok for the demo"
    assert shown["payment"]["approval"]["approval_status"] == "approved"
    text = desk.home.admin("payment", "show", err.payment_id).stdout
    assert f"{err.approval_id} approved by alice at" in text


def test_denial_signs_nothing_and_returns_the_reservation(desk: Desk) -> None:
    before = desk.daily_spent()
    err = desk.held("held-deny")
    assert desk.daily_spent() == before + 3000
    desk.alice.deny(err.approval_id, "not today")
    assert desk.daily_spent() == before
    with pytest.raises(ApprovalDeniedError) as denied:
        desk.svc.pay("held-deny", "POST", URL, payment_required=DEMAND)
    assert (denied.value.status, denied.value.note) == ("denied", "not today")
    (row,) = [p for p in desk.svc.list_payments() if p.payment_id == err.payment_id]
    assert row.status == PaymentStatus.DENIED
    with pytest.raises(ApprovalClosedError):
        desk.alice.approve(err.approval_id)


def test_expiry_signs_nothing_and_returns_the_reservation(desk: Desk) -> None:
    before = desk.daily_spent()
    short = demand_header("3000", url=URL, maxTimeoutSeconds=2)  # the demand's own validity
    err = desk.held("held-expire", short)
    assert err.expires_at_ms - time.time() * 1000 <= 2500
    deadline = time.monotonic() + 15
    while desk.daily_spent() != before and time.monotonic() < deadline:
        time.sleep(0.25)  # the daemon's sweep expires it within a second of its expiry
    assert desk.daily_spent() == before
    with pytest.raises(ApprovalClosedError) as late:  # an approval that comes too late
        desk.alice.approve(err.approval_id)
    assert late.value.status == "expired"
    with pytest.raises(ApprovalDeniedError) as gone:
        desk.svc.pay("held-expire", "POST", URL, payment_required=short)
    assert gone.value.status == "expired"


def test_bad_approvals_are_refused_and_sign_nothing(desk: Desk) -> None:
    with pytest.raises(NotFoundError):
        desk.alice.approve("apr_" + "0" * 24)
    own = None
    with pytest.raises(ApprovalRequiredError) as caught:
        desk.selfish.pay("held-own", "POST", URL, payment_required=DEMAND)
    own = caught.value
    with pytest.raises(PermissionDeniedError):  # its own payment, though it may approve
        desk.selfish.approve(own.approval_id)
    with pytest.raises(PermissionDeniedError):  # no approve scope
        desk.svc.approve(own.approval_id)
    with pytest.raises(PermissionDeniedError):
        desk.reader.list_approvals()
    # the refusals changed nothing: still pending, still not signed
    (still,) = [a for a in desk.alice.list_approvals() if a.approval_id == own.approval_id]
    assert still.status == "pending"


def test_walletd_pay_waits_for_the_decision_and_prints_the_header(desk: Desk) -> None:
    got: list[str] = []

    def pay() -> None:  # the real CLI, over the blocking client
        out = desk.home.run(
            "pay", "--socket", str(desk.home.socket), "--token-file", str(desk.tokens["svc"]),
            "--url", URL, "--method", "POST", "--payment-required", DEMAND,
            "--idempotency-key", "held-wait", "--wait-for-approval", "30", "--json",
        )  # fmt: skip
        got.append(out.stdout)

    earlier = {a.approval_id for a in desk.alice.list_approvals("pending")}
    thread = threading.Thread(target=pay)
    thread.start()
    deadline = time.monotonic() + 20
    found: list[Approval] = []
    while not found and time.monotonic() < deadline:
        found = [a for a in desk.alice.list_approvals("pending") if a.approval_id not in earlier]
        time.sleep(0.1)
    (held,) = found
    desk.alice.approve(held.approval_id)
    thread.join(60)
    (printed,) = got
    doc = json.loads(printed)
    assert doc["payment_id"] == held.payment_id
    assert doc["header_value"] and doc["reused"] is False


def test_the_async_client_waits_and_approves_like_the_blocking_one(desk: Desk) -> None:
    async def run() -> tuple[object, object]:
        payer = AsyncWalletClient(
            socket=desk.home.socket, token_file=desk.tokens["svc"], timeout=30
        )
        alice = AsyncWalletClient(socket=desk.home.socket, token_file=desk.tokens["alice"])
        async with payer, alice:
            with pytest.raises(ApprovalRequiredError) as held:
                await payer.pay("held-async", "POST", URL, payment_required=DEMAND)
            waiting = asyncio.create_task(
                payer.pay("held-async", "POST", URL, payment_required=DEMAND,
                          wait_for_approval=20)
            )  # fmt: skip
            await asyncio.sleep(0.5)
            decided = await alice.approve(held.value.approval_id, "async")
            return decided, await waiting

    decided, receipt = asyncio.run(run())
    assert decided.status == "approved"  # type: ignore[attr-defined]
    assert isinstance(receipt, PayReceipt) and receipt.header_value and not receipt.reused


def test_watch_streams_new_and_decided_approvals(desk: Desk) -> None:
    token = desk.tokens["alice"].read_text().strip()
    seen: list[tuple[str, str, str]] = []
    channel = grpc.insecure_channel(f"unix://{desk.home.socket}")
    stream = pb_grpc.WalletServiceStub(channel).WatchApprovals(
        pb.WatchApprovalsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=30
    )

    def read() -> None:
        try:
            for event in stream:
                seen.append((event.kind, event.approval.approval_id, event.approval.status))
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(1)  # the stream is open (its snapshot may be empty)
    err = desk.held("held-watch")
    desk.alice.deny(err.approval_id)
    deadline = time.monotonic() + 10
    while ("decided", err.approval_id, "denied") not in seen and time.monotonic() < deadline:
        time.sleep(0.1)
    stream.cancel()  # type: ignore[no-untyped-call]
    reader.join(10)
    channel.close()
    assert ("pending", err.approval_id, "pending") in seen
    assert ("decided", err.approval_id, "denied") in seen


def test_watch_needs_the_approve_scope(desk: Desk) -> None:
    token = desk.tokens["svc"].read_text().strip()
    with grpc.insecure_channel(f"unix://{desk.home.socket}") as channel:
        stream = pb_grpc.WalletServiceStub(channel).WatchApprovals(
            pb.WatchApprovalsRequest(), metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )  # fmt: skip
        with pytest.raises(PermissionDeniedError), map_rpc_errors():
            next(iter(stream))


def _approved_and_denied(desk: Desk, key: str) -> Approval:
    """One approved, signed payment and one denied, under ``key``-1 and ``key``-2."""
    yes, no = desk.held(f"{key}-1"), desk.held(f"{key}-2")
    approved = desk.alice.approve(yes.approval_id, "fine")
    desk.svc.pay(f"{key}-1", "POST", URL, payment_required=DEMAND)
    desk.alice.deny(no.approval_id)
    return approved


def test_spend_report_groups_by_approval_in_every_format(desk: Desk, tmp_path: Path) -> None:
    _approved_and_denied(desk, "report")
    args = ("spend-report", "--client", "svc", "--group-by", "approval")
    doc = json.loads(desk.home.admin(*args, "--format", "json").stdout)
    rows = {row["key"]["approval"]: row for row in doc["rows"]}
    assert {"approved", "denied"} <= set(rows)
    assert rows["approved"]["statuses"]["pending"]["count"] >= 1  # signed, not yet settled
    denied = rows["denied"]
    assert denied["statuses"]["refused"]["count"] >= 1  # denied: nothing was signed
    csv_text = desk.home.admin(*args, "--format", "csv").stdout
    assert "approval" in csv_text.splitlines()[0] and ",denied," in csv_text
    table = desk.home.admin(*args, "--format", "table").stdout
    assert "denied" in table and "approved" in table
    out = tmp_path / "report.html"
    desk.home.admin(*args, "--format", "html", "--out", str(out))
    assert "denied" in out.read_text()
    by_approver = json.loads(
        desk.home.admin("spend-report", "--group-by", "approver", "--json").stdout
    )
    assert "alice" in {row["key"]["approver"] for row in by_approver["rows"]}


def test_audit_catches_an_edited_threshold_and_an_edited_approval(desk: Desk) -> None:
    home = desk.home
    approved = _approved_and_denied(desk, "audit")
    assert home.admin("audit", "verify", "--json", check=False).returncode == 0
    db = sqlite3.connect(home.data_dir / "walletd.db")
    edit_note = "UPDATE approvals SET note = ? WHERE id = ?"
    try:
        db.execute("UPDATE clients SET approve_above = 100000000 WHERE name = 'svc'")
        db.execute(edit_note, ("approved by nobody", approved.approval_id))
        db.commit()
        found = home.admin("audit", "verify", "--json", check=False)
        problems = json.dumps(json.loads(found.stdout))
        assert found.returncode != 0
        assert "approval threshold edited: approve_above" in problems
        assert "approval edited: note" in problems
    finally:
        db.execute("UPDATE clients SET approve_above = 2000 WHERE name = 'svc'")
        db.execute(edit_note, ("fine", approved.approval_id))
        db.commit()
        db.close()


def test_budget_set_approve_above_takes_usd_or_off_and_refuses_the_rest(desk: Desk) -> None:
    home = desk.home
    doc = json.loads(home.admin("budget", "set", "reader", "--approve-above", "1", "--json").stdout)
    assert doc["approve_above"] == 1_000_000
    off = home.admin("budget", "set", "reader", "--approve-above", "off", "--json").stdout
    assert json.loads(off)["approve_above"] is None
    bad = home.admin("budget", "set", "reader", "--approve-above", "lots", check=False)
    assert bad.returncode == 2 and "--approve-above" in bad.stderr
    shown = home.admin("budget", "show", "--global").stdout
    assert "approval above: none" in shown


def test_the_client_watch_sees_a_held_payment_then_its_decision(desk: Desk) -> None:
    seen: list[tuple[str, str, str]] = []
    opened = threading.Event()

    def read() -> None:
        with WalletClient(socket=desk.home.socket, token_file=desk.tokens["alice"]) as alice:
            events = alice.watch_approvals(seconds=20)
            opened.set()
            for event in events:
                seen.append((event.kind, event.approval.approval_id, event.approval.status))
                if event.kind == "decided" and event.approval.approval_id == held_id[0]:
                    break  # leaving the loop cancels the stream

    held_id: list[str] = [""]
    reader = threading.Thread(target=read)
    reader.start()
    assert opened.wait(10)
    time.sleep(0.5)  # the stream is open (its snapshot may be empty)
    err = desk.held("held-client-watch")
    held_id[0] = err.approval_id
    desk.alice.approve(err.approval_id, "ok")
    reader.join(25)
    assert not reader.is_alive()
    assert ("pending", err.approval_id, "pending") in seen
    assert ("decided", err.approval_id, "approved") in seen


def test_the_async_client_watch_ends_quietly_at_its_time(desk: Desk) -> None:
    err = desk.held("held-async-watch")

    async def run() -> list[tuple[str, str]]:
        async with AsyncWalletClient(
            socket=desk.home.socket, token_file=desk.tokens["alice"]
        ) as alice:
            return [(e.kind, e.approval.approval_id) async for e in alice.watch_approvals(2)]

    started = time.monotonic()
    seen = asyncio.run(run())
    assert ("pending", err.approval_id) in seen  # waiting now: in the snapshot
    assert time.monotonic() - started < 15
    desk.alice.deny(err.approval_id)


def test_approvals_watch_prints_each_event_as_a_json_line(desk: Desk) -> None:
    err = desk.held("held-cli-watch")
    out = desk.home.run(
        "approvals", "watch", "--for", "2", "--json", "--token-file", str(desk.tokens["alice"]),
        "--socket", str(desk.home.socket),
    )  # fmt: skip
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert {"kind": "pending", "id": err.approval_id} in [
        {"kind": e["kind"], "id": e["approval"]["approval_id"]} for e in events
    ]
    assert all(e["approval"]["amount_usd"] for e in events)
    desk.alice.deny(err.approval_id)


def test_approvals_watch_needs_the_approve_scope(desk: Desk) -> None:
    with pytest.raises(PermissionDeniedError):
        next(iter(desk.svc.watch_approvals(5)))
