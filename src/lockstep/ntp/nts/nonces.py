"""Nonces for a busy NTS server, drawn from the operating system's CSPRNG a chunk at a time.

An NTS reply needs two fresh nonces (the new cookie's, RFC 8915 §6, and the authenticator's,
§5.6). One ``os.urandom`` call per nonce costs a system call, ≈ 0.35 µs each, about as much as
the rest of the reply's Python; one call per 4 KiB serves 128 replies. The bytes are the same
CSPRNG output either way, and nonces are public (both travel in the clear), so holding the
next few in memory reveals nothing. A forked worker must not reuse its parent's unspent bytes:
the pool empties itself in the child.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Final, Protocol

CHUNK: Final = 4096


class _Forgetful(Protocol):
    def forget(self) -> None: ...


def forget_nonces_in_child(pool: _Forgetful) -> None:
    """Make a forked child drop ``pool``'s unspent bytes (held weakly: no leak)."""
    reference = weakref.ref(pool)

    def forget_in_child() -> None:
        alive = reference()
        if alive is not None:
            alive.forget()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=forget_in_child)


class NoncePool:
    """Hands out slices of ``random_bytes(CHUNK)`` blocks, in order, each byte once."""

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom, *, chunk: int = CHUNK) -> None:
        self._random_bytes = random_bytes
        self._chunk = chunk
        self._pool = b""
        self._position = 0
        forget_nonces_in_child(self)

    def forget(self) -> None:
        """Drop the unspent bytes."""
        self._pool, self._position = b"", 0

    def take(self, length: int) -> bytes:
        """The next ``length`` unused random bytes."""
        start = self._position
        end = start + length
        if end > len(self._pool):
            self._pool = self._random_bytes(max(self._chunk, length))
            start, end = 0, length
        self._position = end
        return self._pool[start:end]
