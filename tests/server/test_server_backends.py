"""Contract tests: the in-process and the Redis backends give the same answers (broadcaster style).

Hypothesis drives the same random sequence of operations through both, against a real redis-server
(tests/redis_server.py): link sessions (every rule of link_sessions.py, now through Redis's JSON state
and WATCH transactions), rate limits (the Lua bucket against ratelimit.spend), media tokens. Then the
fan-out bus between two hubs on one Redis, as two instances see it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.server.errors import ApiError
from lockstep.server.frames import Outgoing, encode
from lockstep.server.hub import Hub
from lockstep.server.link_sessions import CompanionContext, IssuedRef, RefState
from lockstep.server.link_store import LinkStore, MemoryLinkStore
from lockstep.server.media_tokens import MemoryMediaTokens
from lockstep.server.media_uploads import TooManyUploads, UploadLedger, UploadsInFlight
from lockstep.server.ratelimit import MemoryRateLimiter
from lockstep.server.redis_backend import (
    POOL_SIZE,
    RedisLinkStore,
    RedisMediaTokens,
    RedisRateLimiter,
    RedisUploads,
    connect,
)
from lockstep.server.redis_bus import RedisBus, pack, unpack
from redis_server import RedisServer, new_prefix

CONTEXT = CompanionContext("Chrome 156 on Linux", "browser", "ua", "127.0.0.1")
PRIMARIES = ("phone-a", "phone-b")
START = 1_000_000

link_steps = st.lists(
    st.one_of(
        st.tuples(st.just("start")),
        st.tuples(st.just("start_code")),
        st.tuples(st.just("offer"), st.integers(0, 3), st.sampled_from(PRIMARIES)),
        st.tuples(st.just("answer"), st.integers(0, 3)),
        st.tuples(st.just("issue"), st.integers(0, 3)),
        st.tuples(st.just("wait"), st.integers(0, 150_000)),
        st.tuples(st.just("claim"), st.integers(0, 8), st.sampled_from(PRIMARIES)),
        st.tuples(st.just("lookup"), st.integers(0, 8)),
        st.tuples(st.just("resolve"), st.integers(0, 8), st.sampled_from(PRIMARIES), st.booleans()),
        st.tuples(st.just("reopen"), st.integers(0, 8), st.sampled_from(PRIMARIES)),
        st.tuples(st.just("close"), st.integers(0, 3)),
        st.tuples(st.just("progress"), st.integers(0, 3)),
    ),
    max_size=40,
)


def _ref_view(issued: IssuedRef | None) -> object:
    if issued is None:
        return None
    return (
        issued.index,
        issued.state,
        issued.claimed_by,
        issued.issued_at,
        issued.expires_at,
        issued.last,
        issued.offered,
        issued.answered,
    )


async def _run_link_steps(store: LinkStore, steps: list[tuple[Any, ...]]) -> list[object]:
    """Apply the steps; answers are comparable across stores (ids, refs and code ids by position)."""
    now, sessions, refs, answers, code_ids = START, [], [], [], []  # type: ignore[var-annotated]
    for step in steps:
        kind = step[0]
        try:
            if kind in ("start", "start_code"):
                session = await store.start(CONTEXT, now, code=kind == "start_code")
                sessions.append(session.session_id)
                if session.code_id is not None:
                    code_ids.append(session.code_id)
                answers.append(kind)
            elif kind == "offer":
                code_id = code_ids[step[1] % len(code_ids)] if code_ids else "ZZZ"
                answers.append(_ref_view(await store.offer(code_id, step[2], now)))
            elif kind == "answer":
                if sessions:
                    answers.append(_ref_view(await store.answer(sessions[step[1] % len(sessions)], now)))
            elif kind == "wait":
                now += step[1]
            elif kind in ("issue", "close", "progress"):
                if not sessions:
                    continue
                session_id = sessions[step[1] % len(sessions)]
                if kind == "issue":
                    issued = await store.issue_next(session_id, now)
                    if issued is not None:
                        refs.append(issued.ref)
                    answers.append(_ref_view(issued))
                elif kind == "close":
                    answers.append(await store.close(session_id))
                else:
                    answers.append(await store.progress(session_id))
            else:
                ref = refs[step[1] % len(refs)] if refs else bytes(32)
                if kind == "claim":
                    answers.append(_ref_view(await store.claim(ref, step[2], now)))
                elif kind == "lookup":
                    answers.append(_ref_view(await store.lookup(ref, now)))
                elif kind == "resolve":
                    outcome = RefState.GRANTED if step[3] else RefState.DECLINED
                    answers.append(_ref_view(await store.resolve(ref, step[2], now, outcome)))
                else:
                    answers.append(await store.reopen(ref, step[2]))
        except ApiError as error:
            answers.append(error.code)
    return answers


def _on_redis(redis: RedisServer, work: Callable[[Any, str], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        client = connect(redis.url)
        try:
            return await work(client, new_prefix())
        finally:
            await client.aclose()

    return asyncio.run(run())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=link_steps)
def test_link_sessions_in_redis_follow_the_same_rules(
    redis: RedisServer, steps: list[tuple[Any, ...]]
) -> None:
    in_memory = asyncio.run(_run_link_steps(MemoryLinkStore(), steps))
    in_redis = _on_redis(redis, lambda client, prefix: _run_link_steps(RedisLinkStore(client, prefix), steps))
    assert in_redis == in_memory


def test_concurrent_claims_in_redis_have_one_winner(redis: RedisServer) -> None:
    async def race(client: Any, prefix: str) -> list[str]:
        store = RedisLinkStore(client, prefix)
        session = await store.start(CONTEXT, START)
        issued = await store.issue_next(session.session_id, START)
        assert issued is not None

        async def claim(primary: str) -> str:
            try:
                await store.claim(issued.ref, primary, START + 1)
                return "ok"
            except ApiError as error:
                return error.code

        return await asyncio.gather(*(claim(f"phone-{n}") for n in range(20)))

    answers = _on_redis(redis, race)
    assert sorted(answers) == ["ok"] + ["ref_used"] * 19


def test_more_concurrent_redis_operations_than_connections_all_succeed(redis: RedisServer) -> None:
    # 1,000 link flows at once: commands beyond the pool wait for a connection instead of failing.
    async def run(client: Any, prefix: str) -> tuple[int, int]:
        store = RedisLinkStore(client, prefix)
        sessions = await asyncio.gather(*(store.start(CONTEXT, START) for _ in range(3 * POOL_SIZE)))
        issued = await asyncio.gather(*(store.issue_next(s.session_id, START) for s in sessions))
        connections = len(await client.client_list())
        return sum(1 for i in issued if i is not None), connections

    issued, connections = _on_redis(redis, run)
    assert issued == 3 * POOL_SIZE
    assert connections <= POOL_SIZE  # this client's, and the one asking


limit_steps = st.lists(
    st.tuples(st.sampled_from(["alice", "bob"]), st.integers(0, 30_000), st.booleans()), max_size=60
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(per_minute=st.integers(1, 5), steps=limit_steps)
def test_rate_limits_in_redis_spend_like_the_memory_buckets(
    redis: RedisServer, per_minute: int, steps: list[tuple[str, int, bool]]
) -> None:
    async def run(limiter: Any) -> list[bool]:
        now, answers = START, []
        for key, wait, spend in steps:
            now += wait
            answers.append(await (limiter.allow(key, now) if spend else limiter.exhausted(key, now)))
        return answers

    in_memory = asyncio.run(run(MemoryRateLimiter(per_minute)))
    in_redis = _on_redis(redis, lambda client, prefix: run(RedisRateLimiter(client, prefix, "t", per_minute)))
    assert in_redis == in_memory


def test_a_rate_limit_in_redis_is_shared_by_every_instance(redis: RedisServer) -> None:
    async def run(client: Any, prefix: str) -> list[bool]:
        instances = [RedisRateLimiter(client, prefix, "link_start", 4) for _ in range(2)]
        return [await instances[n % 2].allow("127.0.0.9", START) for n in range(6)]

    assert _on_redis(redis, run) == [True] * 4 + [False] * 2


def test_media_tokens_in_redis_work_like_in_memory(redis: RedisServer) -> None:
    async def run(tokens: Any) -> list[str | None]:
        token = await tokens.issue("device-1", START, 600_000)
        return [
            await tokens.device(token, START + 1),
            await tokens.device(token, START + 600_000),
            await tokens.device("not-a-token", START),
        ]

    expected = ["device-1", None, None]
    assert asyncio.run(run(MemoryMediaTokens())) == expected
    assert _on_redis(redis, lambda client, prefix: run(RedisMediaTokens(client, prefix))) == expected


def test_the_uploads_ledger_in_redis_caps_holds_and_forgets_like_the_one_in_memory(
    redis: RedisServer,
) -> None:
    async def run(ledger: UploadLedger) -> list[object]:
        seen: list[object] = []
        first, others = await ledger.start("d", 40, 2, 0, 1_000)
        second, others_of_second = await ledger.start("d", 5, 2, 0, 1_000)
        seen += [others, others_of_second]  # 0, then the first's 40
        try:
            await ledger.start("d", 1, 2, 0, 1_000)
        except TooManyUploads as refused:
            seen.append(refused.limit)
        seen.append(await ledger.grow("d", second, 70, 10, 1_000))  # the first still holds 40
        seen.append(await ledger.grow("d", first, 20, 10, 1_000))  # never less than announced: 70
        await ledger.finish("d", first)
        third, others_of_third = await ledger.start("d", 0, 2, 20, 1_000)
        seen.append(others_of_third)  # the second's 70
        await ledger.finish("d", second)
        await ledger.finish("d", third)
        seen.append((await ledger.start("d", 0, 1, 30, 1_000))[1])
        return seen

    expected = [0, 40, 2, 40, 70, 70, 0]
    assert asyncio.run(run(UploadsInFlight())) == expected
    assert _on_redis(redis, lambda client, prefix: run(RedisUploads(client, prefix))) == expected

    async def forgets(client: Any, prefix: str) -> tuple[str, int]:
        # An instance that died mid-upload never finishes it: it stops counting when its lease runs out.
        ledger = RedisUploads(client, prefix)
        await ledger.start("d", 100, 1, 0, 1_000)
        try:
            await ledger.start("d", 1, 1, 999, 1_000)
        except TooManyUploads:
            refused = "refused while leased"
        return refused, (await ledger.start("d", 1, 1, 1_000, 1_000))[1]

    assert _on_redis(redis, forgets) == ("refused while leased", 0)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    event=st.dictionaries(st.text(), JSON_VALUES, max_size=5),
    close=st.none() | st.tuples(st.integers(1000, 4999), st.text()),
)
def test_a_bus_message_carries_the_frame_text_and_the_close_request_unchanged(
    event: dict[str, Any], close: tuple[int, str] | None
) -> None:
    # Text with tabs, newlines and any Unicode included: JSON escapes what would split the message.
    frame = encode(event)
    assert unpack(pack("0123abcd", frame, close).encode()) == ("0123abcd", close, frame)


class FakePeer:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.arrived = asyncio.Event()

    def push(self, frame: Outgoing, timer: object = None) -> None:
        self.events.append(json.loads(frame) if isinstance(frame, str) else frame)
        self.arrived.set()

    def close_soon(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def next_event(self) -> dict[str, Any]:
        await asyncio.wait_for(self.arrived.wait(), timeout=5)
        self.arrived.clear()
        return self.events[-1]


async def _two_instances(url: str) -> tuple[Hub, Hub]:
    prefix = new_prefix()
    hubs = (Hub(RedisBus(url, connect(url), prefix)), Hub(RedisBus(url, connect(url), prefix)))
    for hub in hubs:
        await hub.start()
    return hubs


@pytest.mark.anyio
async def test_an_event_reaches_a_socket_on_the_other_instance_once(redis: RedisServer) -> None:
    a, b = await _two_instances(redis.url)
    try:
        on_a, on_b = FakePeer(), FakePeer()
        await a.attach("laptop", on_a)
        await b.attach("laptop", on_b)
        assert await b.online(["laptop", "phone"]) == {"laptop"}
        await b.push(["laptop"], {"event": "hi"})
        assert await on_a.next_event() == {"event": "hi"}
        await b.push(["laptop"], {"event": "again"})
        assert await on_a.next_event() == {"event": "again"}
        assert on_b.events == [{"event": "hi"}, {"event": "again"}]  # once each, not echoed back
        await a.detach("laptop", on_a)
        await b.detach("laptop", on_b)
        assert await b.online(["laptop"]) == set()
    finally:
        await a.close()
        await b.close()


@pytest.mark.anyio
async def test_a_disconnect_on_one_instance_closes_the_socket_on_the_other(redis: RedisServer) -> None:
    a, b = await _two_instances(redis.url)
    try:
        companion = FakePeer()
        await a.attach("laptop", companion)
        await a.attach_link("session-1", FakePeer())
        assert await b.link_owner_present("session-1")
        assert not await b.link_owner_present("session-2")
        await b.disconnect("laptop", {"event": "device.unlinked"}, 4001, "unlinked")
        assert await companion.next_event() == {"event": "device.unlinked"}
        assert companion.closed == (4001, "unlinked")
    finally:
        await a.close()
        await b.close()


@pytest.mark.anyio
async def test_after_a_redis_restart_the_instances_catch_up_and_events_flow_again(
    private_redis: RedisServer,
) -> None:
    a, b = await _two_instances(private_redis.url)
    caught_up = asyncio.Event()

    async def catch_up() -> None:
        caught_up.set()

    a.on_reconnected = catch_up
    try:
        laptop = FakePeer()
        await a.attach("laptop", laptop)
        private_redis.kill()
        await b.push(["laptop"], {"event": "lost"})  # no error: the store has what matters
        private_redis.start()
        await asyncio.wait_for(caught_up.wait(), timeout=10)
        for _ in range(100):  # b's publishing connection reconnects on first use
            await b.push(["laptop"], {"event": "after"})
            if laptop.events:
                break
            await asyncio.sleep(0.05)
        assert laptop.events and laptop.events[0] == {"event": "after"}
    finally:
        await a.close()
        await b.close()
