"""Each blocking class or function of walletd.client and its asyncio twin offer the same API.

Same public names and the same signatures, modulo ``async``: ``close`` is
``aclose``, ``__enter__``/``__exit__`` are ``__aenter__``/``__aexit__``,
``__iter__``/``__next__`` are ``__aiter__``/``__anext__``, and a type named
``Async...`` (``AsyncWalletClient``, ``httpx.AsyncBaseTransport``) stands for
its blocking twin. What is a coroutine function on one side is a plain function
on the other, and nothing else is.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

import walletd.client as wc
from walletd.client import _openai

CLASS_TWINS = [
    (wc.WalletClient, wc.AsyncWalletClient),
    (wc.ClusterClient, wc.AsyncClusterClient),
    (wc.ChatStream, wc.AsyncChatStream),
]
FUNCTION_TWINS = [
    (wc.http_client, wc.async_http_client),
    (wc.openai_http_client, wc.async_openai_http_client),
    (_openai.walletd_openai, _openai.async_walletd_openai),
]
OPTION_TWINS = [(wc.HttpOptions, wc.AsyncHttpOptions)]

ASYNC_NAMES = {
    "close": "aclose",
    "__enter__": "__aenter__",
    "__exit__": "__aexit__",
    "__iter__": "__aiter__",
    "__next__": "__anext__",
}
PROTOCOL = frozenset(ASYNC_NAMES)


def _public(cls: type) -> set[str]:
    """Names a caller uses: no underscore, plus the protocol methods the class defines."""
    names = {n for n in dir(cls) if not n.startswith("_")}
    return names | {n for n in PROTOCOL | set(ASYNC_NAMES.values()) if hasattr(cls, n)}


def _as_sync(text: str) -> str:
    """An annotation with each asyncio name replaced by its blocking twin's."""
    return re.sub(r"\bAsync(?=[A-Z])|\basync_", "", text)


def _shape(func: Callable[..., Any]) -> str:
    return _as_sync(str(inspect.signature(func)))


def _is_coroutine(cls: type, name: str) -> bool:
    return inspect.iscoroutinefunction(inspect.getattr_static(cls, name))


@pytest.mark.parametrize(("sync", "twin"), CLASS_TWINS, ids=lambda c: c.__name__)
def test_class_and_its_async_twin_have_the_same_public_names(sync: type, twin: type) -> None:
    expected = {ASYNC_NAMES.get(n, n) for n in _public(sync)}
    assert _public(twin) == expected


@pytest.mark.parametrize(("sync", "twin"), CLASS_TWINS, ids=lambda c: c.__name__)
def test_class_and_its_async_twin_have_the_same_signatures(sync: type, twin: type) -> None:
    assert _shape(sync) == _shape(twin)  # the constructors
    for name in _public(sync):
        async_name = ASYNC_NAMES.get(name, name)
        mine, theirs = inspect.getattr_static(sync, name), inspect.getattr_static(twin, async_name)
        if isinstance(mine, property):
            assert isinstance(theirs, property), name
            continue
        if not callable(mine):
            continue
        assert _shape(getattr(sync, name)) == _shape(getattr(twin, async_name)), name
        if name in ("__iter__", "__aiter__"):
            continue
        if inspect.isgeneratorfunction(mine):  # a stream: an async generator in the twin
            assert inspect.isasyncgenfunction(theirs), async_name
            continue
        assert not _is_coroutine(sync, name), name
        assert _is_coroutine(twin, async_name), async_name


@pytest.mark.parametrize(("sync", "twin"), FUNCTION_TWINS, ids=lambda f: f.__name__)
def test_function_and_its_async_twin_have_the_same_signature(
    sync: Callable[..., Any], twin: Callable[..., Any]
) -> None:
    assert _shape(sync) == _shape(twin)


@pytest.mark.parametrize(("sync", "twin"), OPTION_TWINS, ids=lambda t: t.__name__)
def test_options_and_their_async_twin_have_the_same_keys(sync: type, twin: type) -> None:
    sync_types = {k: _as_sync(str(v)) for k, v in sync.__annotations__.items()}
    assert {k: _as_sync(str(v)) for k, v in twin.__annotations__.items()} == sync_types


def test_every_async_class_closes_with_aclose() -> None:
    for name in wc.__all__:
        obj = getattr(wc, name)
        if inspect.isclass(obj) and name.startswith("Async") and hasattr(obj, "close"):
            pytest.fail(f"{name} has close(); asyncio classes close with aclose()")
