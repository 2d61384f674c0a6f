"""A local x402 facilitator that verifies and really settles ``exact`` and ``upto`` payments.

The x402 SDK ships the facilitator logic (``x402Facilitator`` + ``ExactEvmFacilitatorScheme``
+ ``FacilitatorWeb3Signer``) but no HTTP server for it; this module is that server, with the
three endpoints the SDK's ``HTTPFacilitatorClient`` calls:

* ``POST /verify``  ``{x402Version?, paymentPayload, paymentRequirements}`` -> VerifyResponse
* ``POST /settle``  same body -> SettleResponse (sends ``transferWithAuthorization``)
* ``GET /supported`` -> SupportedResponse

Design choices:

* The SDK's mechanism code is synchronous (blocking web3 calls), so this uses the SDK's
  ``x402FacilitatorSync`` in plain ``def`` endpoints, which FastAPI runs in its thread pool;
  the async ``x402Facilitator`` would block the event loop during settlement.
* Settlements are serialised and the signer re-reads its account nonce from the node for
  every transaction (:class:`_ChainNonceSigner`). The SDK signer caches the next nonce in
  process, which breaks after ``evm_revert``: the chain forgets the facilitator's
  transactions but the cache does not, and the next transaction waits forever on a gap.
  Throughput does not matter on a devnet; surviving snapshot/revert between tests does.
* The SDK raises on some inputs (e.g. an unregistered network). Those become an ordinary
  negative answer (``isValid: false`` / ``success: false``, reason ``facilitator_error``)
  rather than a 500, because the SDK's HTTP client turns any non-200 into an exception and
  the resource server then answers 500 instead of 402.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from web3 import Web3
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements
from x402.schemas.helpers import parse_payment_payload, parse_payment_requirements
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequirementsV1

__all__ = ["DEFAULT_NETWORKS", "create_facilitator_app"]

DEFAULT_NETWORKS: tuple[str, ...] = ("eip155:8453",)
FACILITATOR_ERROR = "facilitator_error"
_log = logging.getLogger(__name__)


class _ChainNonceSigner(FacilitatorWeb3Signer):
    """The SDK's web3 signer, but taking each transaction's nonce from the node.

    Only safe because the app serialises settlements (one transaction in flight) and anvil
    mines on submission; see the module docstring for why the SDK's cache is replaced.
    """

    def _reserve_nonce(self) -> int:
        with self._nonce_lock:
            address = Web3.to_checksum_address(self.address)
            return int(self._w3.eth.get_transaction_count(address, "pending"))


class FacilitatorRequest(BaseModel):
    """The body of ``/verify`` and ``/settle`` as the SDK's HTTP client sends it."""

    model_config = ConfigDict(extra="ignore")
    x402_version: int | None = Field(default=None, alias="x402Version")
    payment_payload: dict[str, Any] = Field(alias="paymentPayload")
    payment_requirements: dict[str, Any] = Field(alias="paymentRequirements")

    def parsed(
        self,
    ) -> tuple[PaymentPayload | PaymentPayloadV1, PaymentRequirements | PaymentRequirementsV1]:
        """The SDK models; the payload's own version decides how to read the requirements."""
        payload = parse_payment_payload(self.payment_payload)
        requirements = parse_payment_requirements(payload.x402_version, self.payment_requirements)
        return payload, requirements


def _dump(model: BaseModel) -> dict[str, Any]:
    """Wire JSON of an SDK model (camelCase, no nulls), as the SDK client expects."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _bad_request(exc: ValidationError) -> JSONResponse:
    """400 for a body the SDK cannot parse (the SDK client reports it as an error)."""
    return JSONResponse({"error": f"invalid facilitator request: {exc}"}, status_code=400)


def _network_of(requirements: dict[str, Any]) -> str:
    """The network named by raw requirements, for negative settle answers."""
    return str(requirements.get("network", ""))


def create_facilitator_app(
    rpc_url: str,
    account: LocalAccount,
    *,
    networks: tuple[str, ...] = DEFAULT_NETWORKS,
    confirmation_timeout_seconds: float = 30.0,
) -> FastAPI:
    """A FastAPI facilitator whose settlements are sent from ``account`` to ``rpc_url``.

    ``account`` pays the gas, so it must hold ETH on that node (an anvil dev account does).
    """
    signer = _ChainNonceSigner(
        private_key="0x" + bytes(account.key).hex(),
        rpc_url=rpc_url,
        confirmation_timeout_seconds=confirmation_timeout_seconds,
    )
    facilitator = x402FacilitatorSync()
    facilitator.register(list(networks), ExactEvmFacilitatorScheme(signer))
    facilitator.register(list(networks), UptoEvmFacilitatorScheme(signer))
    settle_lock = threading.Lock()
    app = FastAPI(title="walletd devnet facilitator", docs_url=None, redoc_url=None)

    @app.get("/supported")
    def supported() -> JSONResponse:
        return JSONResponse(_dump(facilitator.get_supported()))

    @app.post("/verify")
    def verify(body: FacilitatorRequest) -> JSONResponse:
        try:
            payload, requirements = body.parsed()
        except ValidationError as exc:
            return _bad_request(exc)
        try:
            result: BaseModel = facilitator.verify(payload, requirements)
        except Exception as exc:
            _log.exception("facilitator verify raised")
            return JSONResponse(
                {"isValid": False, "invalidReason": FACILITATOR_ERROR, "invalidMessage": str(exc)}
            )
        return JSONResponse(_dump(result))

    @app.post("/settle")
    def settle(body: FacilitatorRequest) -> JSONResponse:
        try:
            payload, requirements = body.parsed()
        except ValidationError as exc:
            return _bad_request(exc)
        try:
            with settle_lock:
                result: BaseModel = facilitator.settle(payload, requirements)
        except Exception as exc:
            _log.exception("facilitator settle raised")
            failure = {
                "success": False,
                "errorReason": FACILITATOR_ERROR,
                "errorMessage": str(exc),
                "transaction": "",
                "network": _network_of(body.payment_requirements),
            }
            return JSONResponse(failure)
        return JSONResponse(_dump(result))

    return app
