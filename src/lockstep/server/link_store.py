"""Where link sessions are kept: in this process, or (``--redis``) in Redis so any instance can act
on a ref whichever instance its companion is connected to.

Every operation is defined once, in :class:`LinkOperations`, as a call into the pure
:class:`~lockstep.server.link_sessions.LinkRegistry`. A store only supplies a registry holding the
session concerned: :class:`MemoryLinkStore` its one long-lived registry, the Redis store a registry
loaded from Redis and written back atomically after the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lockstep.link.bycode import new_code_id
from lockstep.server.errors import ApiError, ErrorCode
from lockstep.server.link_sessions import CompanionContext, IssuedRef, LinkRegistry, LinkSession, RefState

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a session's rotation stands: when its current ref stops being live, whether it is over."""

    deadline: int | None
    finished: bool
    gone: bool = False
    """The session's state no longer exists (expired, or lost with a Redis restart)."""


CODE_ID_ATTEMPTS = 32
"""Random code ids tried before a typed-code session is refused: with 32,768 ids, each kept ten
minutes, failing 32 times in a row means the server is flooded with code sessions."""


def no_free_code_id() -> ApiError:
    return ApiError(ErrorCode.RATE_LIMITED, "too many linking codes are open on this server; try again soon")


class LinkStore(Protocol):
    async def start(self, context: CompanionContext, now: int, *, code: bool = False) -> LinkSession:
        """A new session; with ``code`` a typed-code one (§10) with a code id no live session has."""
        ...

    async def issue_next(self, session_id: str, now: int) -> IssuedRef | None: ...

    async def progress(self, session_id: str) -> Progress: ...

    async def lookup(self, ref: bytes, now: int) -> IssuedRef: ...

    async def claim(self, ref: bytes, device_id: str, now: int) -> IssuedRef: ...

    async def resolve(self, ref: bytes, device_id: str, now: int, outcome: RefState) -> IssuedRef: ...

    async def reopen(self, ref: bytes, device_id: str) -> None: ...

    async def offer(self, code_id: str, device_id: str, now: int) -> IssuedRef: ...

    async def answer(self, session_id: str, now: int) -> IssuedRef: ...

    async def close(self, session_id: str) -> bool:
        """True if the session had not finished (its companion abandoned it)."""
        ...


SessionChange = Callable[[LinkRegistry, LinkSession | None], T]
RefChange = Callable[[LinkRegistry], T]


class LinkOperations:
    """The operations of :class:`LinkStore`, given a way to run a change against a registry."""

    async def _on_session(self, session_id: str, change: SessionChange[T]) -> T:
        raise NotImplementedError

    async def _on_ref(self, ref: bytes, change: RefChange[T]) -> T:
        raise NotImplementedError

    async def _on_code(self, code_id: str, change: RefChange[T]) -> T:
        raise NotImplementedError

    async def issue_next(self, session_id: str, now: int) -> IssuedRef | None:
        def issue(registry: LinkRegistry, session: LinkSession | None) -> IssuedRef | None:
            return None if session is None else registry.issue_next(session, now)

        return await self._on_session(session_id, issue)

    async def progress(self, session_id: str) -> Progress:
        def read(registry: LinkRegistry, session: LinkSession | None) -> Progress:
            if session is None:
                return Progress(None, True, gone=True)
            return Progress(registry.next_deadline(session), session.finished)

        return await self._on_session(session_id, read)

    async def lookup(self, ref: bytes, now: int) -> IssuedRef:
        return await self._on_ref(ref, lambda registry: registry.lookup(ref, now))

    async def claim(self, ref: bytes, device_id: str, now: int) -> IssuedRef:
        return await self._on_ref(ref, lambda registry: registry.claim(ref, device_id, now))

    async def resolve(self, ref: bytes, device_id: str, now: int, outcome: RefState) -> IssuedRef:
        return await self._on_ref(ref, lambda registry: registry.resolve(ref, device_id, now, outcome))

    async def reopen(self, ref: bytes, device_id: str) -> None:
        await self._on_ref(ref, lambda registry: registry.reopen(ref, device_id))

    async def offer(self, code_id: str, device_id: str, now: int) -> IssuedRef:
        return await self._on_code(code_id, lambda registry: registry.offer(code_id, device_id, now))

    async def answer(self, session_id: str, now: int) -> IssuedRef:
        def answer(registry: LinkRegistry, session: LinkSession | None) -> IssuedRef:
            if session is None:
                raise ApiError(ErrorCode.REF_EXPIRED, "this page's code is over; get a new one")
            return registry.answer(session, now)

        return await self._on_session(session_id, answer)

    async def close(self, session_id: str) -> bool:
        return await self._on_session(
            session_id, lambda registry, session: session is not None and registry.close(session)
        )


class MemoryLinkStore(LinkOperations):
    """Sessions in this process: right for a single instance (the default)."""

    def __init__(self) -> None:
        self.registry = LinkRegistry()

    async def start(self, context: CompanionContext, now: int, *, code: bool = False) -> LinkSession:
        if not code:
            return self.registry.start(context, now)
        self.registry.prune(now)
        for _ in range(CODE_ID_ATTEMPTS):
            if self.registry.code_free(code_id := new_code_id()):
                return self.registry.start(context, now, code_id)
        raise no_free_code_id()

    async def _on_session(self, session_id: str, change: SessionChange[T]) -> T:
        return change(self.registry, self.registry.session(session_id))

    async def _on_ref(self, ref: bytes, change: RefChange[T]) -> T:
        return change(self.registry)

    async def _on_code(self, code_id: str, change: RefChange[T]) -> T:
        return change(self.registry)
