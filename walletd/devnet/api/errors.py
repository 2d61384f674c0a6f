"""The one error shape of the local paid API: ``{"error": {"message", "type", "code"}}``.

Errors come from three places (a handler's :class:`ApiError`, FastAPI and Starlette's own
validation and routing errors, and the ASGI layers that answer before any handler runs);
they all build their body here so that a client sees one shape whoever refused it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

__all__ = [
    "ApiError",
    "error_body",
    "install_error_handlers",
    "json_bytes",
    "send_raw_error",
]

_ERROR_DEFAULTS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "Invalid request"),
    401: ("authentication_error", "invalid_api_key", "Invalid API key"),
    402: ("payment_required", "payment_required", "Payment required"),
    404: ("not_found_error", "not_found", "Not found"),
    405: ("invalid_request_error", "method_not_allowed", "Method not allowed"),
    429: ("rate_limit_error", "rate_limit_exceeded", "Too many requests"),
    500: ("server_error", "internal_error", "Internal server error"),
    502: ("server_error", "bad_gateway", "Bad gateway"),
    503: ("server_error", "service_unavailable", "Service unavailable"),
}


class ApiError(Exception):
    """An error a handler raises to answer in the documented error shape."""

    def __init__(self, status: int, message: str, type_: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


def json_bytes(data: Any) -> bytes:
    """Compact JSON, the encoding every body of the API uses."""
    return json.dumps(data, separators=(",", ":")).encode()


def _error_dict(
    status: int, message: str | None = None, code: str | None = None, type_: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "code"}}``, defaults filled in from the status."""
    default_type, default_code, default_message = _ERROR_DEFAULTS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", "error", "Error")
    )
    error = {
        "message": message or default_message,
        "type": type_ or default_type,
        "code": code or default_code,
    }
    return {"error": error}


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """The documented error shape for a status, as response bytes."""
    return json_bytes(_error_dict(status, message, code))


async def send_raw_error(
    send: Send, status: int, message: str | None = None, extra: dict[str, str] | None = None
) -> None:
    """Send a complete error-shaped JSON response straight onto an ASGI ``send``."""
    body = error_body(status, message)
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------
# FastAPI exception handlers
# ---------------------------------------------------------------------------


def _error_response(status: int, message: str, code: str, type_: str | None = None) -> Response:
    """A Starlette response in the error shape (used by the exception handlers)."""
    return JSONResponse(_error_dict(status, message, code, type_), status_code=status)


async def _on_api_error(_: Request, exc: Exception) -> Response:
    """Render an :class:`ApiError` raised by a handler."""
    assert isinstance(exc, ApiError)
    return _error_response(exc.status, exc.message, exc.code, exc.type)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    """Turn FastAPI's 422 into the gateway's 400 ``invalid_request_error``.

    The code names the offending top-level field (``invalid_n``, ``invalid_messages``) so a
    test can tell which check fired without parsing the message.
    """
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid body", "type": "invalid"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        code = "invalid_json"
    else:
        code = f"invalid_{loc[0]}" if loc else "invalid_body"
    where = ".".join(loc) or "body"
    return _error_response(400, f"{where}: {first.get('msg', 'invalid')}", code)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    """Shape Starlette's own 404/405 (unknown path, wrong method)."""
    assert isinstance(exc, StarletteHTTPException)
    _, code, message = _ERROR_DEFAULTS.get(exc.status_code, ("", "error", str(exc.detail)))
    return _error_response(exc.status_code, message, code)


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    """Shape an unhandled handler error as a 500 (Starlette still logs and re-raises it)."""
    return _error_response(500, f"internal error: {type(exc).__name__}", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error a FastAPI app produces use the documented shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
