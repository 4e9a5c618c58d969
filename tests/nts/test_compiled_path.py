"""The compiled NTS server path (lockstep/ntp/nts/_fastpath.c, Nettle) answers byte for byte
what the Python path, the reference, answers; any request it does not answer itself (drops, NAKs,
encrypted fields) it leaves to the Python path untouched, and malformed or mutated requests
never crash it nor get a reply the reference would not send."""

from __future__ import annotations

import random

from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.ntp.nts import server as nts_server
from lockstep.ntp.nts.client import NtsAuthenticated, NtsClientSession
from lockstep.ntp.nts.cookies import CookieContents, CookieKeys
from lockstep.ntp.nts.fields import cookie_field, seal, unique_identifier
from lockstep.ntp.nts.server import NtsServer
from lockstep.ntp.timestamps import ONE_SECOND, UNIX_EPOCH_SECONDS
from lockstep.ntp.wire import Packet, scan_trailer

# `make deps` builds the extension (Debian: gcc, nettle-dev); these tests are how a missing
# build shows, so they fail rather than skip without it.
NOW = ((1_790_000_000 + UNIX_EPOCH_SECONDS) << 32) + 12345
KEYS = CookieKeys(b"m" * 32, rotation=3600, keep=3)
OTHER_KEYS = CookieKeys(b"o" * 32)
C2S = bytes(range(32))
S2C = bytes(range(32, 64))
HEADER = bytes([0x24, 2, 0, 0xEC]) + bytes(range(44))


def test_the_compiled_path_is_built() -> None:
    assert nts_server.COMPILED_AVAILABLE, "lockstep.ntp.nts._fastpath was not built (gcc, nettle-dev?)"


def servers(seed: int) -> tuple[NtsServer, NtsServer]:
    """(compiled, Python reference) with the same nonce source."""
    compiled = NtsServer(KEYS, random_bytes=random.Random(seed).randbytes)
    reference = NtsServer(KEYS, random_bytes=random.Random(seed).randbytes, compiled=False)
    assert compiled._fast is not None and reference._fast is None
    return compiled, reference


def request(transmit: int, cookies_held: int, *, cookie_age: int = 0, keys: CookieKeys = KEYS) -> bytes:
    made = NOW - cookie_age * 3600 * ONE_SECOND
    cookies = [keys.make(CookieContents(15, C2S, S2C), made) for _ in range(cookies_held)]
    return NtsClientSession(C2S, S2C, cookies).protect(Packet(transmit_timestamp=transmit).encode())


def answer(server: NtsServer, data: bytes, now: int = NOW) -> object:
    trailer = scan_trailer(data)
    assert trailer is not None
    return server.respond(data, trailer, HEADER, now)


class CountingFastPath:
    """The compiled object with a count of the requests it answered itself."""

    def __init__(self, fast: object) -> None:
        self.fast = fast
        self.answered = 0

    def respond(self, data: bytes, header: bytes, key_id: int) -> bytes | None:
        reply = self.fast.respond(data, header, key_id)  # type: ignore[attr-defined]
        self.answered += reply is not None
        return reply

    def set_keys(self, *args: object) -> None:
        self.fast.set_keys(*args)  # type: ignore[attr-defined]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(
        st.tuples(st.integers(1, 2**64 - 1), st.integers(1, 8), st.integers(0, 5)), min_size=1, max_size=12
    ),
    seed=st.integers(0, 2**32),
)
def test_replies_equal_the_python_path_byte_for_byte(requests: list[tuple[int, int, int]], seed: int) -> None:
    """Good requests asking for 0..7 more cookies, with cookies up to five rotations old (keep
    is 3: the older ones get NAKs from the Python path), one after another on one server: the
    same bytes and counters, and every request with a live cookie answered by the compiled path."""
    compiled, reference = servers(seed)
    counting = CountingFastPath(compiled._fast)
    compiled._fast = counting  # type: ignore[assignment]
    for transmit, held, age in requests:
        data = request(transmit, held, cookie_age=age)
        assert answer(compiled, data) == answer(reference, data)
    assert compiled.counters == reference.counters
    assert counting.answered == sum(1 for _, _, age in requests if age <= KEYS.keep)


def test_a_request_answered_by_the_compiled_path_is_accepted_by_the_client() -> None:
    compiled, _ = servers(1)
    cookie = KEYS.make(CookieContents(15, C2S, S2C), NOW)
    session = NtsClientSession(C2S, S2C, [cookie, cookie, cookie])
    data = session.protect(Packet(transmit_timestamp=7).encode())
    counting = CountingFastPath(compiled._fast)
    compiled._fast = counting  # type: ignore[assignment]
    reply = answer(compiled, data)
    assert isinstance(reply, bytes) and counting.answered == 1
    assert reply[:48] == HEADER and len(reply) <= len(data)
    checked = session.check(reply, Packet.decode(reply))
    assert checked == NtsAuthenticated(6)  # the spent cookie and one per placeholder (8 - 2 held)


mutations = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    held=st.integers(1, 8),
    flips=mutations,
    cut=st.integers(0, 400),
    extra=st.binary(max_size=64),
    seed=st.integers(0, 2**32),
)
def test_mutated_requests_get_what_the_python_path_gives(
    held: int, flips: list[tuple[int, int]], cut: int, extra: bytes, seed: int
) -> None:
    """Bytes flipped anywhere, the datagram cut short or lengthened: the compiled path answers
    only what verifies, and then the reference's bytes; whatever it declines, the reference
    decides (drop or NAK)."""
    compiled, reference = servers(seed)
    answer(compiled, request(1, 1))
    answer(reference, request(1, 1))
    data = bytearray(request(99, held))
    for position, value in flips:
        data[48 + position % (len(data) - 48)] = value
    mutated = bytes(data[: len(data) - cut % (len(data) - 47)]) + extra
    trailer = scan_trailer(mutated)
    if trailer is None:
        return  # NtpServer drops it before NTS sees it
    assert compiled.respond(mutated, trailer, HEADER, NOW) == reference.respond(mutated, trailer, HEADER, NOW)
    assert compiled.counters == reference.counters


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=49, max_size=1300), key_id=st.integers(0, 2**32 - 1))
def test_arbitrary_bytes_never_crash_it(data: bytes, key_id: int) -> None:
    compiled, _ = servers(0)
    answer(compiled, request(1, 1))
    fast = compiled._fast
    assert fast is not None
    assert fast.respond(data, HEADER, KEYS.key_id(NOW)) is None
    assert fast.respond(data, HEADER, key_id) is None
    assert fast.respond(data, HEADER[:47], KEYS.key_id(NOW)) is None


@settings(max_examples=150, deadline=None)
@given(
    c2s=st.binary(min_size=32, max_size=32),
    unique_id=st.binary(min_size=32, max_size=64).map(lambda b: b[: len(b) // 4 * 4]),
    nonce=st.binary(min_size=1, max_size=40),
)
def test_request_authenticators_verify_exactly_when_aessiv_says(
    c2s: bytes, unique_id: bytes, nonce: bytes
) -> None:
    """A request's tag (the SIV of an empty plaintext) as Nettle checks it, against
    `cryptography`'s AESSIV over random keys, associated data and nonces of any length (padded as
    §5.6 says): a request AESSIV sealed is answered, one bit off anywhere is not."""
    compiled, _ = servers(3)
    answer(compiled, request(1, 1))
    fast = compiled._fast
    assert fast is not None
    cookie = KEYS.make(CookieContents(15, c2s, S2C), NOW)
    body = (
        Packet(transmit_timestamp=5).encode()
        + unique_identifier(unique_id).encode()
        + cookie_field(cookie).encode()
    )
    data = body + seal(AESSIV(c2s), nonce, body).encode()
    assert fast.respond(data, HEADER, KEYS.key_id(NOW)) is not None
    tag = len(body) + 8 + len(nonce) + -len(nonce) % 4
    # The header, the cookie, the nonce, the tag (padding is not authenticated, §5.6).
    for position in (0, len(body) - 1, len(body) + 8, tag, tag + 15):
        tampered = bytearray(data)
        tampered[position] ^= 1
        assert fast.respond(bytes(tampered), HEADER, KEYS.key_id(NOW)) is None
