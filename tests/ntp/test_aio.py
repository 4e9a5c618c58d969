"""The asyncio/UDP adapters: timestamps taken where RFC 5905 §8 wants them."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import pytest

from lockstep.ntp.aio import clock, mmsg
from lockstep.ntp.aio.client import _UdpSource, query
from lockstep.ntp.aio.server import serve_workers
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import from_timestamp, from_unix_ns, to_unix_ns
from lockstep.ntp.wire import Packet
from ntp.ntp_peers import free_udp_port, run_server_in_thread


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_server_timestamps_are_ordered_within_the_exchange(batched: bool) -> None:
    core = NtpServer(ServerState.local(stratum=3, now=clock.now()))
    with (
        run_server_in_thread(core, batched=batched) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.settimeout(3)
        for _ in range(20):
            transmit = secrets.randbits(64)
            t1 = from_unix_ns(time.time_ns())
            request = bytes([0x23]) + bytes(39) + transmit.to_bytes(8, "big")
            sock.sendto(request, ("127.0.0.1", server.port))
            reply = Packet.decode(sock.recv(1024))
            t4 = from_unix_ns(time.time_ns())
            t2 = from_timestamp(reply.receive_timestamp, t1)
            t3 = from_timestamp(reply.transmit_timestamp, t1)
            assert reply.origin_timestamp == transmit
            # One host clock: T2 (kernel arrival) and T3 (read before sending) lie strictly
            # inside the client's own T1..T4, and the server's hold time is not zero.
            assert t1 < t2 < t3 < t4


def test_batched_reader_reports_the_kernel_arrival_time_not_the_read_time() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        batch = mmsg.DatagramBatch(receiver, size=4, timestamps=True)
        # The kernel switches receive timestamping on from a work queue when the first socket
        # asks (net_enable_timestamp): datagrams until then arrive unstamped. Wait for that.
        for _ in range(100):
            sender.sendto(b"w" * 48, receiver.getsockname())
            time.sleep(0.005)
            if batch.receive() == 1 and batch.received_ns(0) is not None:
                break
        sent_at = time.time_ns()
        sender.sendto(b"x" * 48, receiver.getsockname())
        time.sleep(0.2)  # the datagram waits in the socket buffer
        assert batch.receive() == 1
        arrival = batch.received_ns(0)
        assert arrival is not None
        assert sent_at <= arrival < sent_at + 50_000_000  # stamped on arrival, not 200 ms later
        sender.sendto(b"y" * 48, receiver.getsockname())  # slots are reusable
        time.sleep(0.01)
        assert batch.receive() == 1 and batch.received_ns(0) is not None


def test_query_measures_a_tiny_loopback_delay() -> None:
    core = NtpServer(ServerState.local(stratum=3, now=clock.now()))
    with run_server_in_thread(core) as server:
        delays = [asyncio.run(query(f"127.0.0.1:{server.port}", timeout=3)).delay for _ in range(5)]
    assert min(delays) < 0.002  # loopback: the round trip minus the server's T3 - T2


def test_client_stamps_replies_on_arrival_even_when_the_loop_is_busy() -> None:
    async def run() -> tuple[int, list[int]]:
        arrivals: list[int] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(3)
            source = await _UdpSource.open(
                socket.AF_INET, peer.getsockname(), lambda data, at: arrivals.append(at)
            )
            try:
                source.send(b"request")
                _, address = peer.recvfrom(64)
                sent_at = time.time_ns()
                peer.sendto(b"reply", address)
                time.sleep(0.2)  # the event loop is blocked while the reply waits
                await asyncio.sleep(0.05)
            finally:
                source.close()
        return sent_at, arrivals

    sent_at, arrivals = asyncio.run(run())
    assert len(arrivals) == 1
    assert to_unix_ns(arrivals[0]) - sent_at < 50_000_000  # not 200 ms late


def test_reuseport_workers_without_recvmmsg_answer_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where recvmmsg is missing, each worker serves its one SO_REUSEPORT socket from an event
    loop. (A worker that opened a second socket left the first bound and unread: the kernel sent
    it the share of clients that hashed to it, and they never got an answer.)"""
    monkeypatch.setattr(mmsg, "available", lambda: False)  # the forked workers inherit this
    port = free_udp_port()
    workers = serve_workers(lambda: NtpServer(ServerState.local(9, clock.now())), "127.0.0.1", port, 2)
    try:
        assert exchange_from_new_port(port, attempts=50)  # serving (each try from a new port)
        answered = sum(exchange_from_new_port(port) for _ in range(24))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(5)
    assert answered == 24


def exchange_from_new_port(port: int, attempts: int = 1) -> bool:
    """One request from a fresh ephemeral port (the kernel picks the worker by its hash)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            sock.sendto(bytes([0x23]) + bytes(47), ("127.0.0.1", port))
            try:
                return Packet.decode(sock.recv(1024)).stratum == 9
            except OSError:  # not bound yet (ICMP unreachable), or no answer
                continue
    return False
