"""The NTS server's nonce pool: every random byte used once, and none shared across a fork."""

from __future__ import annotations

import os
import random
import sys

import pytest

from lockstep.ntp.nts.nonces import NoncePool


def test_nonces_are_the_random_stream_in_order_each_byte_once() -> None:
    stream = random.Random(7).randbytes(4096 * 3)
    drawn: list[int] = []

    def random_bytes(length: int) -> bytes:
        drawn.append(length)
        start = sum(drawn[:-1])
        return stream[start : start + length]

    pool = NoncePool(random_bytes)
    taken = b"".join(pool.take(16) for _ in range(512))  # 8 KiB: two draws
    assert taken == stream[:8192]
    assert drawn == [4096, 4096]
    # A request larger than what is left starts a fresh draw; the rest is never handed out.
    pool.take(4000)
    assert pool.take(200) == stream[8192 + 4096 : 8192 + 4096 + 200]


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_worker_does_not_reuse_the_parents_nonces() -> None:
    pool = NoncePool()
    pool.take(16)  # the pool now holds unspent bytes
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, pool.take(16))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    childs = os.read(reader, 16)
    os.close(reader)
    assert len(childs) == 16
    assert childs != pool.take(16)  # the parent's next bytes were not the child's
