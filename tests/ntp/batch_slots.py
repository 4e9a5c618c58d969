"""Batches filled by hand, as recvmmsg would leave them, for tests of the batched UDP server.

:func:`make_server` gives a :class:`UdpServer` whose sends are recorded instead of made (the
48-byte slots' ``sendmmsg``, the long replies' one, a lone basic reply's ``sendto``, sent from
Python, and the one-by-one sends of replies that ask for a transmit timestamp); :func:`fill` writes payloads,
lengths, the kernel's SO_TIMESTAMPING control messages and the senders' addresses into the
receive slots.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator

from lockstep.ntp.aio import mmsg
from lockstep.ntp.aio.server import UdpServer, open_udp_socket
from lockstep.ntp.limiter import IPV6_KEY
from lockstep.ntp.server import NtpServer
from lockstep.ntp.timestamps import UNIX_EPOCH_SECONDS, from_timestamp

UNIX_2026 = 1_764_000_000
UNIX_2040 = 2_208_988_800  # 2040-01-01: NTP era 1


Sent = list[tuple[bytes, bytes]]  # (reply, the raw sockaddr it went to), in sending order


@contextlib.contextmanager
def make_server(core: NtpServer, host: str = "127.0.0.1") -> Iterator[tuple[UdpServer, Sent]]:
    server = UdpServer(core, open_udp_socket(host, 0), batched=True)
    batch = server._mmsg
    assert batch is not None
    sent: Sent = []

    def send(count: int) -> int:
        for i in range(count):
            address = batch.raddr[i * mmsg.ADDRESS_SIZE : i * mmsg.ADDRESS_SIZE + batch.address_length]
            sent.append((bytes(batch.sdata[i * 48 : i * 48 + 48]), bytes(address)))
        return count

    def send_stamped(reply: bytes, sockaddr: bytearray, client: object) -> None:
        sent.append((reply, bytes(sockaddr)))

    long_replies = server._long_replies

    def send_long() -> int:
        sent.extend(long_replies.slot(i) for i in range(long_replies.used))
        long_replies.used = 0
        return 0

    class RecordingSocket:
        """The server's socket, but ``sendto`` (a lone basic reply) records what it would send."""

        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def __getattr__(self, name: str) -> object:
            return getattr(self._sock, name)

        def sendto(self, reply: bytes, address: tuple[str, int] | tuple[str, int, int, int]) -> int:
            sent.append((reply, raw_sockaddr(address)))
            return len(reply)

    server.sock = RecordingSocket(server.sock)  # type: ignore[assignment]
    # A lone basic reply goes through the recorded sendto; the compiled send of it (C's own
    # sendto) is tested on a real socket (tests/ntp/test_batch_fast_path.py).
    server._compiled_send_basic = None
    batch.send = send  # type: ignore[method-assign]
    long_replies.send = send_long  # type: ignore[method-assign]
    server._send_stamped = send_stamped  # type: ignore[method-assign]
    try:
        yield server, sent
    finally:
        server.sock._sock.close()  # type: ignore[attr-defined]


def raw_sockaddr(address: tuple[str, int] | tuple[str, int, int, int]) -> bytes:
    """A socket-module address as the raw sockaddr_in / sockaddr_in6 of a receive slot."""
    port = struct.pack(">H", address[1])
    if len(address) == 2:
        return struct.pack("<H", socket.AF_INET) + port + socket.inet_aton(address[0]) + bytes(8)
    packed = socket.inet_pton(socket.AF_INET6, address[0])
    return struct.pack("<H", socket.AF_INET6) + port + bytes(4) + packed + struct.pack("<I", address[3])


def by_slot(sent: Sent) -> Sent:
    """Replies in the order of the requests they answer (datagram i came from port 40000 + i)."""
    return sorted(sent, key=lambda entry: entry[1][2:4])


def fill(
    server: UdpServer,
    datagrams: list[tuple[bytes, int, bool]],
    senders: list[bytes] | None = None,
    ports: list[int] | None = None,
) -> None:
    """Put (payload, arrival in Unix ns, whether the kernel stamped it) into the receive slots;
    datagram i comes from ``senders[i]`` (packed IPv4 or IPv6), by default 127.0.0.(i + 1), from
    port ``ports[i]``, by default 40000 + i."""
    batch = server._mmsg
    assert batch is not None
    for i, (payload, arrival_ns, stamped) in enumerate(datagrams):
        start = i * batch.max_datagram
        batch.rdata[start : start + len(payload)] = payload
        batch.lengths[i * mmsg.STRIDE + mmsg.MSG_LEN_INDEX] = len(payload)
        address = i * mmsg.ADDRESS_SIZE
        sender = bytes([127, 0, 0, 1 + i]) if senders is None else senders[i]
        port = struct.pack(">H", 40000 + i if ports is None else ports[i])
        if len(sender) == 4:
            sockaddr = struct.pack("<H", socket.AF_INET) + port + sender + bytes(8)
        else:
            sockaddr = struct.pack("<H", socket.AF_INET6) + port + bytes(4) + sender + bytes(4)
        batch.raddr[address : address + len(sockaddr)] = sockaddr
        if not stamped:
            batch.lengths[i * mmsg.STRIDE + mmsg.CONTROLLEN_INDEX] = 0
        else:
            batch.lengths[i * mmsg.STRIDE + mmsg.CONTROLLEN_INDEX] = mmsg.CONTROL_SIZE
            stamp_control(batch, i, arrival_ns)


def stamp_control(batch: mmsg.DatagramBatch, index: int, arrival_ns: int) -> None:
    """Slot ``index``'s control message as the kernel writes it: a cmsghdr (SOL_SOCKET,
    SO_TIMESTAMPING) and struct scm_timestamping, whose first timespec is ``arrival_ns``."""
    seconds, nanoseconds = divmod(arrival_ns, 1_000_000_000)
    struct.pack_into(
        "@Nii2q",
        batch.control,
        index * mmsg.CONTROL_SIZE,
        socket.CMSG_LEN(48),
        socket.SOL_SOCKET,
        mmsg.SO_TIMESTAMPING,
        seconds,
        nanoseconds,
    )


@contextlib.contextmanager
def listening(senders: list[bytes]) -> Iterator[list[socket.socket]]:
    """One UDP socket per datagram, bound to its sender's IPv4 loopback address on a free port:
    where the server's real sends arrive (the compiled NTS path sends with its own sendmmsg)."""
    sockets: list[socket.socket] = []
    try:
        for sender in senders:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.bind((socket.inet_ntoa(sender), 0))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def arrived(sockets: list[socket.socket], expected: set[int], timeout: float = 2.0) -> dict[int, bytes]:
    """The datagram waiting on each socket, by index: every socket in ``expected`` is waited for
    (up to ``timeout`` in all), the others only read if something is there already."""
    out: dict[int, bytes] = {}
    deadline = time.monotonic() + timeout
    for index, sock in enumerate(sockets):
        sock.settimeout(max(0.0, deadline - time.monotonic()) if index in expected else 0.0)
        with contextlib.suppress(BlockingIOError, TimeoutError):
            out[index] = sock.recv(2048)
    return out


def full_time(unix_ns: int) -> int:
    return (UNIX_EPOCH_SECONDS << 32) + ((unix_ns << 32) + 500_000_000) // 1_000_000_000


def client_key(sender: bytes) -> int:
    """The client key the adapter gives the core for a sender (lockstep.ntp.limiter)."""
    return int.from_bytes(sender, "big") | (IPV6_KEY if len(sender) == 16 else 0)


def expected(core: NtpServer, payload: bytes, arrival_ns: int, transmit: int, client: object) -> bytes:
    """What respond() says, given the reply's own T3 (its wire value) as the transmit time."""
    received = full_time(arrival_ns)
    sent = from_timestamp(transmit, received + core.clock_offset) - core.clock_offset
    reply = core.respond(payload, client, received, sent)
    assert isinstance(reply, bytes)
    return reply
