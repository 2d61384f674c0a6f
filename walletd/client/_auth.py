"""WalletdAuth: an httpx Auth flow that pays x402 demands through the walletd daemon.

Why an Auth flow (and not a transport or event hooks): only an Auth flow can
re-send a request after seeing its answer while keeping the client's proxies,
hooks and per-request timeouts; and the openai SDK (2.x, built on httpx) leaves
the http client's ``auth=`` in charge when it has no auth of its own.

The rules it keeps, because each one is a way to lose money:

* One idempotency key per logical request: the ``Idempotency-Key`` request
  header if the caller set one, else a new ``req_<uuid4hex>`` that is set on the
  request. walletd's Pay is idempotent per key, so any layer that re-sends with
  the same key gets the same signed authorization (same nonce): at most one
  settlement, however many retries.
* At most one payment per flow, and only for the configured base origin.
* A payment header is only ever sent to the exact URL it was made for: a
  redirect (followed by the client, or replayed from ``response.next_request``)
  loses it. Clients made by :func:`http_client` do not follow redirects at all.
* The paid response body is never read here, so streaming works.
* The outcome (status and ``PAYMENT-RESPONSE``) is reported to walletd best
  effort: a report that fails is logged, never raised into the application.
  A report that only records the answer (anything but a refusal of the
  payment) is sent in the background (``walletd.client._outcomes``: in order,
  retried while the daemon is unreachable), so the request returns as soon as
  its answer is read. A refusal (a 402 after paying, or ``success: false``) is
  reported at once, after every queued report, because one answer of it is
  raised: PaidAnswerLostError, when the server refused a payment that the
  chain shows already used (a retry after a lost answer). The request was
  paid; sending it again would pay again.
* Nothing raised here subclasses ``httpx.RequestError``: HTTP SDKs retry those,
  and a retry is another trip through the payment step.

The logic is written once, as a generator of *effects* (send, pay, report, read
a body); :meth:`WalletdAuth.sync_auth_flow` and :meth:`WalletdAuth.async_auth_flow`
only perform them with blocking or awaited I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import httpx

from walletd.client._effects import Done, Plan, aattempt, attempt, step
from walletd.client._outcomes import AsyncOutcomeReporter, Outcome, OutcomeReporter
from walletd.client._settings import WalletdSettings
from walletd.client._wallet import AsyncWalletClient, WalletClient
from walletd.domain.payment import PayReceipt
from walletd.errors import InvalidRequestError, PaidAnswerLostError, WalletdError

log = logging.getLogger("walletd.client.auth")

IDEMPOTENCY_HEADER = "Idempotency-Key"
PAYMENT_HEADERS = ("PAYMENT-SIGNATURE", "X-PAYMENT")
RESPONSE_HEADERS = ("PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE")
PAYMENT_EXTENSION = "walletd.payment"
"""Key of the :class:`PaymentAttempt` left in ``response.extensions`` after a payment."""

PAID_URL_EXTENSION = "walletd.paid_url"
PAID_HEADER_EXTENSION = "walletd.paid_header"
"""The header name walletd attached (Pay decides it: x402 names or a transfer proof)."""
GUARD_EXTENSION = "walletd.redirect_guard"
"""Set by :func:`guard_payment_header` on every hop it sees: proof the client's
redirect hops are checked, without which WalletdAuth will not pay."""
"""Key, in ``request.extensions``, of the URL a payment header was made for."""

LABELS_EXTENSION = "walletd.labels"
"""Key, in ``request.extensions``, of labels for this one request's payment (they win)."""

MAX_LABELLED_BODY = 1 << 20
"""Largest JSON request body read for its ``model`` (bytes); a larger one gets no model label."""
MAX_LABEL_VALUE = 200

FALLBACK_SUFFIX = ".fallback"
"""Appended to the idempotency key when a refused pre-payment falls back to a 402 round trip."""

_SDK_RETRIED_STATUSES = frozenset({408, 409, 429})

C = TypeVar("C", WalletClient, AsyncWalletClient)


def new_idempotency_key() -> str:
    """A fresh key, ``req_<uuid4hex>``: also a valid x402 payment-identifier id."""
    return "req_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Demand:
    """The x402 material of one 402: the v2 header value, or else the v1 JSON body."""

    payment_required: str = ""
    body: bytes = b""


@dataclass(frozen=True)
class PaymentAttempt:
    """What the flow paid for one response (``response.extensions[PAYMENT_EXTENSION]``).

    ``payment_response`` is the server's PAYMENT-RESPONSE value ("" if none);
    ``prepaid`` says the header was attached before any 402 was seen.
    """

    receipt: PayReceipt
    idempotency_key: str
    status: int
    payment_response: str
    prepaid: bool = False

    @property
    def settlement(self) -> dict[str, Any]:
        """The decoded PAYMENT-RESPONSE (``{}`` if absent or malformed)."""
        return decode_b64_json(self.payment_response)


def payment_attempt(response: httpx.Response) -> PaymentAttempt | None:
    """The payment the flow made for ``response``, if it made one."""
    found = response.extensions.get(PAYMENT_EXTENSION)
    return found if isinstance(found, PaymentAttempt) else None


def decode_b64_json(value: str) -> dict[str, Any]:
    """An x402 base64-JSON header as a dict; ``{}`` for anything else (the server is untrusted)."""
    if not value:
        return {}
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def payment_response_of(response: httpx.Response) -> str:
    """The settlement header of a response (v2 name first, then v1)."""
    for name in RESPONSE_HEADERS:
        value: str = response.headers.get(name, "")
        if value:
            return value
    return ""


def payment_refusal_reason(response: httpx.Response) -> str:
    """The server's reason for refusing a payment (PAYMENT-RESPONSE, then PAYMENT-REQUIRED)."""
    settled = decode_b64_json(payment_response_of(response))
    required = decode_b64_json(response.headers.get("PAYMENT-REQUIRED", ""))
    return str(settled.get("errorReason") or required.get("error") or "")[:200]


def _payment_header_names(request: httpx.Request) -> tuple[str, ...]:
    """The x402 names, plus the one walletd set on this request (e.g. a transfer proof)."""
    paid = request.extensions.get(PAID_HEADER_EXTENSION)
    return (*PAYMENT_HEADERS, paid) if isinstance(paid, str) else PAYMENT_HEADERS


def has_payment_header(request: httpx.Request) -> bool:
    """True when the request already carries a payment."""
    return any(name in request.headers for name in _payment_header_names(request))


def strip_payment_headers(request: httpx.Request) -> None:
    """Remove every payment header from a request."""
    for name in _payment_header_names(request):
        request.headers.pop(name, None)


def guard_payment_header(request: httpx.Request) -> None:
    """Drop a payment header that walletd made for another URL (a followed redirect).

    httpx copies all headers but ``Authorization`` to a redirect target, and the
    request's extensions with them; the URL the payment was made for travels in
    the extensions, so a mismatch means this hop must not carry it.
    """
    request.extensions[GUARD_EXTENSION] = True
    _drop_foreign_payment_header(request)


def _drop_foreign_payment_header(request: httpx.Request) -> None:
    paid_url = request.extensions.get(PAID_URL_EXTENSION)
    if paid_url is not None and paid_url != str(request.url) and has_payment_header(request):
        log.warning("dropped a payment header on a redirect to %s", request.url.host)
        strip_payment_headers(request)


async def async_guard_payment_header(request: httpx.Request) -> None:
    """:func:`guard_payment_header` as an AsyncClient event hook (those must be async)."""
    guard_payment_header(request)


def request_labels(request: httpx.Request) -> dict[str, str]:
    """The labels a payment for ``request`` gets by itself: its ``route`` and ``model``.

    ``route`` is the URL path (``/v1/chat/completions``); ``model`` is the
    ``model`` string of a JSON request body (chat, images, the openai SDK), so a
    spend report can be grouped by model. A body that is streamed, not JSON, or
    larger than :data:`MAX_LABELLED_BODY` gives no model label.
    """
    labels = {"route": request.url.path[:MAX_LABEL_VALUE]}
    model = _body_model(request)
    if model:
        labels["model"] = model
    return labels


def _body_model(request: httpx.Request) -> str | None:
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        content = request.content
    except httpx.RequestNotRead:  # a streamed upload: never read here
        return None
    if not content or len(content) > MAX_LABELLED_BODY:
        return None
    try:
        doc = json.loads(content)
    except (ValueError, RecursionError):
        return None
    model = doc.get("model") if isinstance(doc, dict) else None
    return model if isinstance(model, str) and len(model) <= MAX_LABEL_VALUE else None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _route(request: httpx.Request) -> tuple[tuple[str, str, int | None], str, str]:
    """The pre-pay cache key: origin, method and path (the query is not part of a route)."""
    return _origin(request.url), request.method.upper(), request.url.path


def _refused(status: int, settlement: str) -> bool:
    """Whether the server refused the payment (the daemon then checks the chain at once)."""
    return status == 402 or decode_b64_json(settlement).get("success") is False


def _with_server_reason(err: PaidAnswerLostError, reason: str) -> PaidAnswerLostError:
    """The daemon's error, plus the server's own words when only the client saw them."""
    if not reason or err.details.get("server_reason"):
        return err
    details = {**err.details, "server_reason": reason}
    return PaidAnswerLostError(f"{err.message} (the server said: {reason})", details)


# ---- effects ----------------------------------------------------------------


class _Send(NamedTuple):
    request: httpx.Request


class _Pay(NamedTuple):
    key: str
    request: httpx.Request
    demand: Demand


class _Report(NamedTuple):
    payment_id: str
    status: int
    payment_response: str


class _Read(NamedTuple):
    response: httpx.Response


class _Queue(NamedTuple):
    """Hand an outcome to the background reporter."""

    outcome: Outcome


_Effect = _Send | _Pay | _Report | _Read | _Queue


class _Opened(Generic[C]):
    """A walletd client given by the caller, or opened here on first use (then ours to close)."""

    def __init__(self, given: C | None, open_client: Callable[[], C]) -> None:
        self._client: C | None = given
        self._open: Callable[[], C] = open_client
        self._owned = False
        self._lock = threading.Lock()

    def get(self) -> C:
        """The client, opened now if there is none yet."""
        with self._lock:
            if self._client is None:
                self._client, self._owned = self._open(), True
            return self._client

    def release(self) -> C | None:
        """The client if it was opened here (to be closed by the caller), now forgotten."""
        with self._lock:
            if not self._owned:
                return None
            client, self._client, self._owned = self._client, None, False
            return client


class WalletdAuth(httpx.Auth):
    """Pays x402 402s through walletd; best used through ``walletd.client.http_client()``.

    httpx follows redirects inside one auth step and copies every header but
    Authorization, so this flow pays only through a client whose redirect hops
    are guarded (the helpers in ``walletd.client`` install ``guard_payment_header``)
    or that the caller declares does not follow redirects
    (``client_follows_redirects=False``); otherwise it refuses with
    InvalidRequestError and nothing is signed.

    ``base_url``: when given, only requests to its origin are ever paid.
    ``walletd``: the socket, token, labels and pre-pay choice (a
    :class:`WalletdSettings`; the default reads ``$WALLETD_SOCKET`` and
    ``$WALLETD_TOKEN_FILE``). ``wallet``/``async_wallet``, when not given, are
    opened from it on first use, so a request that never meets a 402 needs no
    daemon at all.
    ``error_wrapper`` turns a walletd refusal into the exception the caller's
    SDK propagates without retrying (see ``walletd.client._openai``).
    """

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None = None,
        walletd: WalletdSettings | None = None,
        wallet: WalletClient | None = None,
        async_wallet: AsyncWalletClient | None = None,
        strip_authorization: bool = True,
        error_wrapper: Callable[[WalletdError], Exception] | None = None,
        client_follows_redirects: bool | None = None,
    ) -> None:
        self.settings = walletd or WalletdSettings()
        self._origin = _origin(httpx.URL(str(base_url))) if base_url is not None else None
        self._wallet = _Opened(wallet, self.settings.connect)
        self._async_wallet = _Opened(async_wallet, self.settings.connect_async)
        self._reports = OutcomeReporter(lambda *args: self.wallet().report_outcome(*args))
        self._async_reports = AsyncOutcomeReporter(
            lambda *args: self.async_wallet().report_outcome(*args)
        )
        self._strip_authorization = strip_authorization
        self._error_wrapper = error_wrapper
        # httpx follows a redirect *inside* one auth-flow step and copies every
        # header but Authorization, so the flow itself cannot stop a payment
        # header going to another host. It pays only when that cannot happen:
        # the guard hook ran (helpers in walletd.client._http install it), or the
        # caller says its client does not follow redirects.
        self._redirect_safe = client_follows_redirects is False
        self._demands: dict[tuple[Any, ...], Demand] = {}
        self._lock = threading.Lock()

    @property
    def prepay(self) -> bool:
        """Whether a route's known terms are paid before its request is sent."""
        return self.settings.prepay

    # ---- wallets, opened lazily ------------------------------------------

    def wallet(self) -> WalletClient:
        """The blocking walletd client (opened on first use)."""
        return self._wallet.get()

    def async_wallet(self) -> AsyncWalletClient:
        """The asyncio walletd client (opened on first use; its channel follows the loop)."""
        return self._async_wallet.get()

    def close(self) -> None:
        """Send the queued outcome reports (up to 5 s), close the walletd client opened here.

        A walletd client given to the constructor is yours to close.
        """
        self._reports.close()
        opened = self._wallet.release()
        if opened is not None:
            opened.close()

    async def aclose(self) -> None:
        """Send the queued outcome reports (up to 5 s), close the asyncio client opened here."""
        await self._async_reports.aclose()
        opened = self._async_wallet.release()
        if opened is not None:
            await opened.aclose()

    def flush_reports(self, timeout: float = 5.0) -> bool:
        """Wait until the outcome reports queued by blocking requests are delivered."""
        return self._reports.flush(timeout)

    async def aflush_reports(self, timeout: float = 5.0) -> bool:
        """Wait until the outcome reports queued by asyncio requests are delivered."""
        return await self._async_reports.flush(timeout)

    # ---- pre-pay cache ---------------------------------------------------

    def remember_demand(self, request: httpx.Request, demand: Demand) -> None:
        """Keep ``demand`` as the last terms of the request's route (for pre-pay)."""
        with self._lock:
            self._demands[_route(request)] = demand

    def known_demand(self, request: httpx.Request) -> Demand | None:
        """The last terms seen on the request's route, if any."""
        with self._lock:
            return self._demands.get(_route(request))

    def forget_demands(self) -> None:
        """Drop every remembered route (pre-pay starts over with a 402 round trip)."""
        with self._lock:
            self._demands.clear()

    # ---- the drivers -----------------------------------------------------

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Perform the plan's effects with blocking I/O (httpx sends the requests)."""
        plan = self._plan(request)
        effect = step(plan, None)
        while not isinstance(effect, Done):
            if not isinstance(effect, _Send):
                effect = step(plan, attempt(self._perform, effect))
            else:
                effect = step(plan, (yield effect.request))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Perform the plan's effects with awaited I/O."""
        plan = self._plan(request)
        effect = step(plan, None)
        while not isinstance(effect, Done):
            if isinstance(effect, _Send):
                effect = step(plan, (yield effect.request))
            else:
                effect = step(plan, await aattempt(self._aperform, effect))

    def _perform(self, effect: _Pay | _Report | _Read | _Queue) -> Any:
        if isinstance(effect, _Pay):
            with self._reports.pay_in_flight():
                return self.wallet().pay(**self._pay_args(effect))
        if isinstance(effect, _Queue):
            return self._reports.submit(effect.outcome)
        if isinstance(effect, _Report):
            self._reports.flush()  # in order: after every report queued before it
            return self.wallet().report_outcome(*effect)
        return effect.response.read()

    async def _aperform(self, effect: _Pay | _Report | _Read | _Queue) -> Any:
        if isinstance(effect, _Pay):
            with self._async_reports.pay_in_flight():
                return await self.async_wallet().pay(**self._pay_args(effect))
        if isinstance(effect, _Queue):
            return self._async_reports.submit(effect.outcome)
        if isinstance(effect, _Report):
            await self._async_reports.flush()
            return await self.async_wallet().report_outcome(*effect)
        return await effect.response.aread()

    def mark_redirects_guarded(self) -> None:
        """Declare that every client using this auth runs ``guard_payment_header``.

        The helper clients call this: their hook would prove it on the first hop,
        but a pre-payment is attached before that first hop is sent.
        """
        self._redirect_safe = True

    def _require_redirect_guard(self, request: httpx.Request) -> None:
        if request.extensions.get(GUARD_EXTENSION):
            self._redirect_safe = True  # this client runs the guard on every hop
        if not self._redirect_safe:
            raise InvalidRequestError(
                "walletd will not pay through an httpx client that may forward the payment "
                "header on a redirect: use walletd.client.http_client() or "
                "openai_http_client(), add walletd.client.guard_payment_header as a request "
                "event hook, or pass client_follows_redirects=False for a client built with "
                "follow_redirects=False"
            )

    def _pay_args(self, effect: _Pay) -> dict[str, Any]:
        self._require_redirect_guard(effect.request)
        return {
            "idempotency_key": effect.key,
            "method": effect.request.method,
            "url": str(effect.request.url),
            "payment_required": effect.demand.payment_required,
            "body": effect.demand.body,
            "labels": self._labels_for(effect.request),
        }

    def _labels_for(self, request: httpx.Request) -> dict[str, str]:
        """The request's own route and model, then the settings' labels, then the request's."""
        extra = request.extensions.get(LABELS_EXTENSION)
        given = {str(k): str(v) for k, v in extra.items()} if isinstance(extra, Mapping) else {}
        return {**request_labels(request), **self.settings.labels, **given}

    def _wrap(self, err: WalletdError) -> Exception:
        return err if self._error_wrapper is None else self._error_wrapper(err)

    # ---- the plan --------------------------------------------------------

    def _plan(self, request: httpx.Request) -> Plan[_Effect, None]:
        """The whole flow for one request, as effects; see the module docstring."""
        self._scrub(request)
        key, caller_key = self._idempotency_key(request)
        if self.prepay and self._payable(request) and not has_payment_header(request):
            demand = self.known_demand(request)
            if demand is not None:
                yield from self._prepaid(request, key, caller_key, demand)
                return
        response = yield _Send(request)
        if not self._should_pay(request, response):
            return
        demand = yield from self._read_demand(response)
        if demand is None:
            return
        self.remember_demand(request, demand)
        yield from self._pay_and_send(request, key, caller_key, demand, prepaid=False)

    def _prepaid(
        self, request: httpx.Request, key: str, caller_key: bool, demand: Demand
    ) -> Plan[_Effect, None]:
        """Pay on the remembered terms; on a 402, fall back once to the 402's own terms.

        The fallback signs a second authorization, so it is taken only when the
        refused one was fresh (first sent just now): a reused one may have
        settled on an earlier attempt whose answer was lost.
        """
        response = yield from self._pay_and_send(request, key, caller_key, demand, prepaid=True)
        paid = payment_attempt(response)
        if response.status_code != 402 or paid is None or paid.receipt.reused:
            return
        fresh = yield from self._read_demand(response)
        if fresh is None:
            return
        self.remember_demand(request, fresh)
        yield from self._pay_and_send(
            request, key + FALLBACK_SUFFIX, caller_key, fresh, prepaid=False
        )

    def _pay_and_send(
        self,
        request: httpx.Request,
        key: str,
        caller_key: bool,
        demand: Demand,
        *,
        prepaid: bool,
    ) -> Plan[_Effect, httpx.Response]:
        """Pay, attach the header, send, report; returns the paid response."""
        try:
            receipt: PayReceipt = yield _Pay(key, request, demand)
        except WalletdError as err:
            raise self._wrap(err) from err
        strip_payment_headers(request)
        request.headers[receipt.header_name] = receipt.header_value
        request.extensions = {
            **request.extensions,
            PAID_URL_EXTENSION: str(request.url),
            PAID_HEADER_EXTENSION: receipt.header_name,
        }
        response: httpx.Response = yield _Send(request)
        settlement = payment_response_of(response)
        outcome = Outcome(receipt.payment_id, response.status_code, settlement)
        if not _refused(response.status_code, settlement):
            yield _Queue(outcome)  # the caller has its answer: report it in the background
        else:
            refusal = payment_refusal_reason(response) if response.status_code == 402 else ""
            try:
                yield _Report(*outcome)
            except PaidAnswerLostError as err:  # paid, and the server refused to answer
                raise self._wrap(_with_server_reason(err, refusal)) from err
            except Exception:  # best effort: the request itself has already failed
                log.warning("could not report the outcome of %s", receipt.payment_id)
        response.extensions[PAYMENT_EXTENSION] = PaymentAttempt(
            receipt, key, response.status_code, settlement, prepaid
        )
        self._after_paid(response, caller_key)
        return response

    def _after_paid(self, response: httpx.Response, caller_key: bool) -> None:
        """Make the paid response safe to hand to outer layers.

        A redirect's ready-made ``next_request`` loses the payment header. A
        failure that SDKs retry (429, 5xx...) is marked ``x-should-retry: false``
        when the key was generated here: the SDK's retry would build a new
        request, get a new key, and pay a second time.
        """
        if response.next_request is not None:
            strip_payment_headers(response.next_request)
        status = response.status_code
        if not caller_key and (status in _SDK_RETRIED_STATUSES or status >= 500):
            response.headers["x-should-retry"] = "false"

    def _read_demand(self, response: httpx.Response) -> Plan[_Effect, Demand | None]:
        """The x402 demand of a 402: the v2 header, else a v1 JSON body (read here)."""
        header = response.headers.get("PAYMENT-REQUIRED")
        if header:
            return Demand(payment_required=header)
        if "json" not in response.headers.get("content-type", ""):
            return None
        yield _Read(response)
        body = response.content
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if isinstance(doc, dict) and doc.get("x402Version") == 1 and doc.get("accepts"):
            return Demand(body=body)
        return None

    # ---- checks ----------------------------------------------------------

    def _scrub(self, request: httpx.Request) -> None:
        """Remove what must not leave: a placeholder Authorization, a foreign payment header."""
        if self._strip_authorization:
            request.headers.pop("Authorization", None)
        _drop_foreign_payment_header(request)

    def _idempotency_key(self, request: httpx.Request) -> tuple[str, bool]:
        """The request's key and whether the caller chose it; a new key is set on the request."""
        existing = request.headers.get(IDEMPOTENCY_HEADER)
        if existing:
            return existing, True
        key = new_idempotency_key()
        request.headers[IDEMPOTENCY_HEADER] = key
        return key, False

    def _payable(self, request: httpx.Request) -> bool:
        """True when this request's origin may be paid for."""
        return self._origin is None or _origin(request.url) == self._origin

    def _should_pay(self, request: httpx.Request, response: httpx.Response) -> bool:
        """A 402 from the very URL we asked (no redirect), payable, and not yet paid."""
        return (
            response.status_code == 402
            and self._payable(request)
            and not has_payment_header(request)
            and response.request.url == request.url
            and not response.history
        )
