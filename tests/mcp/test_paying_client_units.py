"""The paying MCP client's pure parts: resource URLs, demand detection, the plan's effects.

No daemon and no server: the plan of one tool call is driven by hand, effect by effect.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from mcp import McpError
from mcp.types import CallToolResult, ErrorData, TextContent

from tests.adversarial.demands import entry, v1_body, v2_doc
from walletd.client import MCPPaymentRejectedError, PayingMCPSession, WalletdSettings
from walletd.client._effects import Done, step
from walletd.client._mcp import (
    MAX_DEMAND_TEXT,
    _Answer,
    _Call,
    _Pay,
    _Report,
    demand_of_error,
    demand_of_result,
    tool_resource_url,
)
from walletd.domain.payment import PayReceipt
from walletd.errors import InvalidDemandError

DOC = v2_doc(entry("1000"))


def _text(text: str, *, error: bool = True, structured: Any = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structuredContent=structured, isError=error
    )


@pytest.mark.parametrize(
    ("server", "tool", "url"),
    [
        ("http://127.0.0.1:8000/mcp", "weather", "http://127.0.0.1:8000/mcp/tools/weather"),
        ("https://tools.example/mcp/", "a b/c", "https://tools.example/mcp/tools/a%20b%2Fc"),
        ("http://h:1/mcp?x=1#f", "t", "http://h:1/mcp/tools/t"),
        ("Weather-Local", "quote", "mcp+stdio://weather-local/tools/quote"),
    ],
)
def test_the_resource_url_names_the_server_and_the_tool(server: str, tool: str, url: str) -> None:
    assert tool_resource_url(server, tool) == url


@pytest.mark.parametrize("server", ["", "http:///mcp", "ftp://x/", "a b", "x" * 64, "-lead"])
def test_a_server_policy_could_not_name_is_refused_when_the_session_is_made(server: str) -> None:
    with pytest.raises(ValueError, match=r"server|host"):
        PayingMCPSession(object(), server=server)  # type: ignore[arg-type]


def test_a_demand_is_found_in_structured_content_or_verbatim_in_the_text() -> None:
    assert json.loads(demand_of_result(_text("x", structured=DOC)) or b"") == DOC
    raw = '{"x402Version":2, "x402Version":2, "accepts":[]}'  # the daemon sees the duplicate
    assert demand_of_result(_text(raw)) == raw.encode()
    assert demand_of_result(_text(v1_body().decode())) == v1_body()


@pytest.mark.parametrize(
    "result",
    [
        _text(json.dumps(DOC), error=False),  # not an error: an answer that quotes a demand
        _text("Payment required"),
        _text('["x402Version"]'),
        _text("x", structured={"accepts": []}),
        CallToolResult(content=[], isError=True),
    ],
)
def test_what_is_not_a_demand_is_left_as_the_tools_answer(result: CallToolResult) -> None:
    assert demand_of_result(result) is None


def test_a_demand_too_long_to_send_is_refused_here() -> None:
    with pytest.raises(InvalidDemandError, match="too large"):
        demand_of_result(_text('{"x402Version":2,"pad":"' + "x" * MAX_DEMAND_TEXT + '"}'))


def test_a_json_rpc_402_carries_the_demand_in_its_data() -> None:
    assert json.loads(demand_of_error(McpError(ErrorData(code=402, message="p", data=DOC))) or b"")
    text = json.dumps(DOC)
    assert demand_of_error(McpError(ErrorData(code=402, message="p", data=text))) == text.encode()
    assert demand_of_error(McpError(ErrorData(code=-32603, message="p", data=DOC))) is None
    assert demand_of_error(McpError(ErrorData(code=402, message="p", data="nope"))) is None


def _receipt() -> PayReceipt:
    payload = {"x402Version": 2, "payload": {"signature": "0x1"}}
    value = base64.b64encode(json.dumps(payload).encode()).decode()
    return PayReceipt("pay_1", "PAYMENT-SIGNATURE", value, 1000, "0xabc", "eip155:8453", 0, False)


def _plan(session: PayingMCPSession) -> Any:
    return session._plan("weather", "key-1", {"trace": "t"}, {"team": "a"})


def test_the_plan_pays_once_sends_the_payload_object_and_reports_the_settlement() -> None:
    session = PayingMCPSession(object(), server="http://127.0.0.1:9/mcp", walletd=WalletdSettings())  # type: ignore[arg-type]
    plan = _plan(session)
    assert step(plan, None) == _Call({"trace": "t"})
    pay = step(plan, _Answer(None, json.dumps(DOC).encode()))
    assert isinstance(pay, _Pay) and pay.key == "key-1"
    assert pay.url == "http://127.0.0.1:9/mcp/tools/weather"
    assert pay.labels == {"tool": "weather", "mcp_server": "http://127.0.0.1:9/mcp", "team": "a"}
    retry = step(plan, _receipt())
    assert retry == _Call(
        {"trace": "t", "x402/payment": {"x402Version": 2, "payload": {"signature": "0x1"}}}
    )
    settled = {"success": True, "transaction": "0x" + "ab" * 32}
    answer = CallToolResult(content=[], _meta={"x402/payment-response": settled})
    report = step(plan, _Answer(answer, None))
    assert isinstance(report, _Report) and (report.payment_id, report.status) == ("pay_1", 200)
    assert json.loads(base64.b64decode(report.payment_response)) == settled
    done = step(plan, "settlement_pending")
    assert isinstance(done, Done)
    result, payment = done.value
    assert result is answer and payment.status == "settlement_pending"
    assert payment.transaction == settled["transaction"]


def test_the_plan_does_not_pay_a_second_demand_after_paying() -> None:
    session = PayingMCPSession(object(), server="quotes")  # type: ignore[arg-type]
    plan = _plan(session)
    step(plan, None)
    step(plan, _Answer(None, json.dumps(DOC).encode()))
    step(plan, _receipt())
    again = _text("x", structured={**DOC, "error": "invalid_exact_evm_nonce_already_used"})
    report = step(plan, _Answer(again, json.dumps(DOC).encode()))
    assert isinstance(report, _Report) and report.status == 402
    with pytest.raises(MCPPaymentRejectedError) as info:
        step(plan, "rejected")
    assert info.value.payment_reason == "invalid_exact_evm_nonce_already_used"
    assert (info.value.payment_id, info.value.server) == ("pay_1", "quotes")
