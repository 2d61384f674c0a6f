"""What every client class shares with its asyncio twin: a plan of effects and two drivers.

The logic of a call (retry this, pay that, read a body when it is an error) is
written once, as a *plan*: a generator that yields effects (send this request,
sleep this long, pay this demand) and is sent each effect's result. A plan does
no I/O. The blocking classes run it with :func:`run`, the asyncio ones with
:func:`arun`, each with a ``perform`` function of a few lines that does one
effect; that function is the only code a class and its twin do not share.

An effect that fails is raised inside the plan, at its ``yield``, so the plan's
own ``try`` blocks say what a failure means (a transport error is retried, a
walletd refusal is wrapped, a failed report is only logged).

:class:`Closing` and :class:`AsyncClosing` give the twins their ``with`` and
``async with`` from ``close()`` and ``aclose()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeAlias, TypeVar

T = TypeVar("T")
E = TypeVar("E")

Plan: TypeAlias = Generator[E, Any, T]
"""A plan yielding effects of type ``E`` and returning ``T``."""


@dataclass(frozen=True)
class Done(Generic[T]):
    """The end of a plan, with what it returned."""

    value: T


@dataclass(frozen=True)
class Failed:
    """An effect that raised: :func:`step` raises ``error`` inside the plan."""

    error: Exception


def step(plan: Plan[E, T], result: Any) -> E | Done[T]:
    """Resume ``plan`` with an effect's result; its next effect, or :class:`Done`."""
    try:
        if isinstance(result, Failed):
            return plan.throw(result.error)
        return plan.send(result)
    except StopIteration as stop:
        return Done(stop.value)


def attempt(perform: Callable[[E], Any], effect: E) -> Any:
    """Do one effect with blocking I/O; its result, or :class:`Failed`."""
    try:
        return perform(effect)
    except Exception as exc:  # raised inside the plan, which decides
        return Failed(exc)


async def aattempt(perform: Callable[[E], Awaitable[Any]], effect: E) -> Any:
    """:func:`attempt` for an awaited ``perform``."""
    try:
        return await perform(effect)
    except Exception as exc:  # as above
        return Failed(exc)


def run(plan: Plan[E, T], perform: Callable[[E], Any]) -> T:
    """Run a plan to its end with blocking I/O."""
    effect = step(plan, None)
    while not isinstance(effect, Done):
        effect = step(plan, attempt(perform, effect))
    return effect.value


async def arun(plan: Plan[E, T], perform: Callable[[E], Awaitable[Any]]) -> T:
    """Run a plan to its end with awaited I/O."""
    effect = step(plan, None)
    while not isinstance(effect, Done):
        effect = step(plan, await aattempt(perform, effect))
    return effect.value


def check_options(options: Mapping[str, object], allowed: Any, caller: str) -> None:
    """Refuse a keyword the TypedDict ``allowed`` does not name, as a signature would.

    ``**options: Unpack[...]`` is checked by type checkers only; at run time a
    misspelt option would otherwise be ignored without a word.
    """
    unknown = sorted(set(options) - allowed.__required_keys__ - allowed.__optional_keys__)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")


class Closing:
    """``with obj:`` closes ``obj`` on the way out."""

    def close(self) -> None:
        """Release what the object holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClosing:
    """``async with obj:`` closes ``obj`` on the way out."""

    async def aclose(self) -> None:
        """Release what the object holds."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
