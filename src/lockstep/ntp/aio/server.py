"""The UDP side of the NTP server.

:class:`UdpServer` reads its socket with ``loop.add_reader`` and drains it — up to ``batch``
datagrams per wake-up — instead of asyncio's one-datagram-per-loop-turn ``DatagramProtocol``,
answering each with :meth:`lockstep.ntp.server.NtpServer.respond`; on Linux it batches with
``recvmmsg``/``sendmmsg``, and :meth:`UdpServer.serve_blocking` serves from a plain thread with
blocking ``recvmmsg`` (what ``lockstep ntp serve`` uses). :func:`serve_workers` runs several processes on one
port with ``SO_REUSEPORT`` (the kernel spreads clients over them by address hash).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from multiprocessing.process import BaseProcess

from lockstep.ntp.aio import mmsg
from lockstep.ntp.interleave import interleave_capable
from lockstep.ntp.limiter import IPV6_KEY
from lockstep.ntp.server import NtpServer
from lockstep.ntp.timestamps import UNIX_EPOCH_SECONDS, from_unix_ns
from lockstep.ntp.wire import KissCode

try:  # the compiled module (setup.py), when built: a lone basic reply's send with T3 read in C
    from lockstep.ntp.nts._fastpath import send_basic as compiled_send_basic
except ImportError:  # pragma: no cover - the Python send below serves
    compiled_send_basic = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Bytes read of a datagram. A longer one arrives cut short; an NTS request then fails its
#: framing or authenticator checks and is dropped (never answered with plain time).
MAX_DATAGRAM = 1024
_NATIVE_3Q = struct.Struct("=3Q")  # a reply's first 24 bytes as the send buffer's native words
_LITTLE_ENDIAN = sys.byteorder == "little"
_FAST_PATH_MIN = 3  # smaller batches: one respond() per datagram is cheaper
_ODD = bytes(byte | 1 for byte in range(256))  # sets a byte's lowest bit (bytes.translate)
_LOWEST_BIT = bytes(byte & 1 for byte in range(256))
# Receive timestamps as before, plus numbered transmit timestamps without the packet's bytes.
_SERVER_TIMESTAMPING = mmsg.RX_TIMESTAMPING | mmsg.SOF_TIMESTAMPING_OPT_ID | mmsg.SOF_TIMESTAMPING_OPT_TSONLY
_ASK_TRANSMIT_STAMP = [
    (socket.SOL_SOCKET, mmsg.SO_TIMESTAMPING, struct.pack("=I", mmsg.SOF_TIMESTAMPING_TX_SOFTWARE))
]
_ERROR_QUEUE_CONTROL = socket.CMSG_SPACE(48) + socket.CMSG_SPACE(64)  # scm_timestamping, the error
_TIMESPEC = struct.Struct("=qq")
_EXTENDED_ERROR = struct.Struct("=IBBBBII")  # struct sock_extended_err: ee_data is the OPT_ID
_SO_EE_ORIGIN_TIMESTAMPING = 4
_RECVERR = {(socket.IPPROTO_IP, 11), (socket.IPPROTO_IPV6, 25)}  # IP_RECVERR, IPV6_RECVERR
_MAX_STAMPS_AWAITED = 4096
# NTS replies (authenticated, so their T3 cannot be rewritten at the send) wait for each other
# to share a sendmmsg at most this long after the first one's T3 was read: the time a client
# sees added to its delay under load (≈ 5 replies of ≈ 10 µs each per system call).
_LONG_REPLY_WAIT_NS = 40_000


def open_udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), IPv4 or IPv6 by the host's form."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_NO_TIMESTAMP = bytes(8)
_WIRE = 0xFFFFFFFFFFFFFFFF  # a full time's 64-bit timestamp (RFC 5905 §6)
_UNIX_EPOCH = UNIX_EPOCH_SECONDS << 32


def _late_transmit_time(received: int, now: int) -> bytes:
    """T3 = ``now`` (served time, just read), as respond() would write it for a reply received
    at ``received``: even, and after that reply's T2."""
    return (max(now & ~1, (received | 1) + 1) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def _address(sockaddr: bytearray) -> tuple[str, int] | tuple[str, int, int, int]:
    """A raw sockaddr_in / sockaddr_in6 from a receive slot as a socket-module address."""
    port = int.from_bytes(sockaddr[2:4], "big")
    if len(sockaddr) == 16:
        return socket.inet_ntop(socket.AF_INET, bytes(sockaddr[4:8])), port
    host = socket.inet_ntop(socket.AF_INET6, bytes(sockaddr[8:24]))
    return host, port, 0, int.from_bytes(sockaddr[24:28], "little")


class UdpServer:
    """Serve one :class:`NtpServer` core on one socket inside a running event loop.

    On Linux it reads and answers up to 64 datagrams per system call (``recvmmsg`` /
    ``sendmmsg``, see :mod:`lockstep.ntp.aio.mmsg`); elsewhere, or with ``batched=False``, it
    drains the socket one ``recvfrom`` at a time, up to ``batch`` datagrams per wake-up. With
    batching, all datagrams read by one ``recvmmsg`` share one receive timestamp.
    """

    def __init__(
        self,
        core: NtpServer,
        sock: socket.socket,
        *,
        batch: int = 256,
        batched: bool | None = None,
    ) -> None:
        self.core = core
        self.sock = sock
        self.batch = batch
        self.send_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mmsg: mmsg.DatagramBatch | None = None
        if batched is None:
            batched = mmsg.available()
        if batched:
            self._mmsg = mmsg.DatagramBatch(
                sock, size=64, max_datagram=MAX_DATAGRAM, reply_in_place=True, timestamps=True
            )
            # 64-bit views of the receive and send slots for the fast path's strided copies.
            self._request_words = memoryview(self._mmsg.rdata).cast("Q")
            self._reply_words = memoryview(self._mmsg.sdata).cast("Q")
            self._reply_halves = memoryview(self._mmsg.sdata).cast("I")
            self._address_halves = memoryview(self._mmsg.raddr).cast("I")
            self._address_words = memoryview(self._mmsg.raddr).cast("Q")
            # Replies longer than 48 bytes (NTS, RFC 8915) leave from slots of their own.
            self._long_replies = mmsg.ReplySlots(sock, size=self._mmsg.size, max_datagram=MAX_DATAGRAM)
        self._prefix = b""  # the header prefix the fast path last wrote into every send slot
        self._compiled_send_basic: Callable[[int, bytes, bytearray, int], None] | None = compiled_send_basic
        # Interleaved mode (RFC 9769): software transmit timestamps of replies to clients that may
        # use it, asked for per send and read from the error queue, numbered by the kernel.
        self._transmit_stamps = False
        self._stamped: dict[int, tuple[Hashable, int]] = {}  # OPT_ID -> (client, receive timestamp)
        self._next_stamp = 0
        if self._mmsg is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, mmsg.SO_TIMESTAMPING, _SERVER_TIMESTAMPING)
                self._transmit_stamps = True

    @property
    def batched(self) -> bool:
        """Whether recvmmsg/sendmmsg are in use (and :meth:`serve_blocking` is possible)."""
        return self._mmsg is not None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        reader = self._drain if self._mmsg is None else self._drain_batched
        self._loop.add_reader(self.sock.fileno(), reader)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _drain(self) -> None:
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        respond = self.core.respond
        clock = time.time_ns
        for _ in range(self.batch):
            try:
                data, address = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP errors from earlier sends surface here on Linux; nothing to do with them.
                continue
            received = from_unix_ns(clock())
            reply = respond(data, address[0], received, from_unix_ns(clock()))
            if type(reply) is bytes:
                try:
                    sendto(reply, address)
                except OSError:
                    self.send_errors += 1

    def _drain_batched(self) -> None:
        batch = self._mmsg
        assert batch is not None
        for _ in range(self.batch // batch.size + 1):
            try:
                count = batch.receive()
            except OSError:
                continue  # an ICMP error reported on the socket: nothing to do with it
            if count == 0:
                break
            self._answer(batch, count)
        if self._next_stamp:  # an error-queue entry wakes this reader too: take it
            self._read_transmit_times()

    def _answer(self, batch: mmsg.DatagramBatch, count: int) -> None:
        """Answer the ``count`` datagrams in ``batch``'s receive slots with one ``sendmmsg``."""
        # The fast path's fixed cost (≈ 3 µs) beats ≈ 1.3 µs per respond() call from 3 datagrams.
        if count >= _FAST_PATH_MIN and self._answer_plain(batch, count):
            return
        left = self._answer_nts_compiled(batch, count)
        if left:
            self._answer_each(batch, count, left)

    def _answer_nts_compiled(self, batch: mmsg.DatagramBatch, count: int) -> Sequence[int]:
        """Answer the batch's NTS requests with no Python per request, when the compiled NTS path
        was built and no deny list or rate limit applies (``FastPath.answer_batch`` in
        lockstep/ntp/nts/_fastpath.c: it parses, opens the cookie, verifies, builds the reply as
        :meth:`NtpServer.respond` would with T3 read just before sealing, and sends with
        ``sendmmsg``); return the indices of the datagrams left for :meth:`_answer_each`."""
        core = self.core
        limiter = core.limiter
        if core.nts is None or limiter.rate_limit is not None or limiter.deny:
            return range(count)
        # The header template and the cookie keys of the first arrival's second serve the batch;
        # a datagram of another second (or none stamped) is left to the general path.
        first_ns = batch.received_ns(0)
        if first_ns is None:
            return range(count)
        arrival = from_unix_ns(first_ns)
        fast = core.nts.compiled(arrival)
        if fast is None:
            return range(count)
        offset = core.clock_offset
        prefix, table = core.batch_template(arrival)
        answered, unsent, left = fast.answer_batch(
            batch.fd, batch.messages, count, prefix, table, (arrival + offset) >> 32, offset
        )
        core.counters.replied += answered
        core.nts.count_compiled(answered)
        self.send_errors += unsent
        return left

    def _answer_plain(self, batch: mmsg.DatagramBatch, count: int) -> bool:
        """The fast path: a batch of plain requests answered with a few whole-batch operations.

        Taken when every datagram is exactly 48 bytes, is a mode 3 request of version 1..4 and
        carries its kernel receive time, and the deny list and rate limit can be applied to the
        batch as a whole (:meth:`lockstep.ntp.limiter.ClientLimiter.admit_batch`); otherwise
        returns False and nothing is sent. The replies are byte for byte those of
        :meth:`NtpServer.respond`, except that all replies of the batch share one T3, read just
        before the ``sendmmsg``. Each step is a strided copy done in C (bytearray/memoryview
        extended slices, ``bytes.translate``, ``array.byteswap``); the per-datagram Python is the
        arrival time's fraction and, with limits, the passes of ``admit_batch``. Requests the
        limiter refuses get :meth:`NtpServer.refuse`'s kiss in their slot, or no reply.
        """
        lengths = batch.lengths
        stride = mmsg.STRIDE
        end = count * stride
        if lengths[mmsg.MSG_LEN_INDEX : end : stride].tolist().count(48) != count:
            return False
        if lengths[mmsg.CONTROLLEN_INDEX : end : stride].tolist().count(mmsg.CONTROL_SIZE) != count:
            return False
        control = batch.control_words
        words = mmsg.CONTROL_SIZE // 8
        seconds = control[2 : count * words : words].tolist()
        nanoseconds = control[3 : count * words : words].tolist()
        # T2 = from_unix_ns(arrival), split into era seconds and fraction: the fraction
        # ((ns << 32) + 5e8) // 1e9 equals ((ns << 24) + 5**9) // (2 * 5**9), on smaller ints.
        fractions = [((ns << 24) + 1_953_125) // 3_906_250 for ns in nanoseconds]
        core = self.core
        offset = core.clock_offset
        epoch = UNIX_EPOCH_SECONDS
        arrivals: list[int] = []
        # One header template serves the batch only if all its replies fall in one second of
        # served time (respond() rebuilds templates each second); else, rarely, the general path.
        if offset:
            arrivals = [((s + epoch) << 32) + f for s, f in zip(seconds, fractions, strict=True)]
            if (min(arrivals) + offset) >> 32 != (max(arrivals) + offset) >> 32:
                return False
        elif seconds.count(seconds[0]) != count:
            return False
        first_arrival = ((seconds[0] + epoch) << 32) + fractions[0]
        prefix, table = core.batch_template(first_arrival)
        rdata = batch.rdata
        slot = batch.max_datagram
        firsts = rdata[0 : count * slot : slot].translate(table)
        if 0 in firsts:
            return False
        if 1 in rdata[31 : count * slot : slot].translate(_LOWEST_BIT):
            return False  # an odd origin: perhaps interleaved mode, which respond() handles
        limiter = core.limiter
        refused: list[tuple[int, KissCode]] | None = None
        clients: list[int] = []
        if limiter.rate_limit is not None or limiter.deny:
            clients = self._client_keys(batch, count)
            if not offset:
                base = (seconds[0] + epoch) << 32
                arrivals = [base + f for f in fractions]
            refused = limiter.admit_batch(clients, arrivals)
            if refused is None:
                return False
        sdata = batch.sdata
        reply_words = self._reply_words
        n = count * 6
        # Header bytes 0..23: the prefix (kept in every send slot until it changes), the
        # request's first byte mapped to the reply's, its poll byte echoed.
        if prefix is not self._prefix:
            columns = _NATIVE_3Q.unpack(prefix)
            size = batch.size * 6
            for column in range(3):
                reply_words[column:size:6] = memoryview(array.array("Q", [columns[column]]) * batch.size)
            self._prefix = prefix
        sdata[0 : count * 48 : 48] = firsts
        sdata[2 : count * 48 : 48] = rdata[2 : count * slot : slot]
        # Origin (bytes 24..31) = the request's transmit timestamp (its bytes 40..47).
        step = slot // 8
        reply_words[3:n:6] = self._request_words[5 : count * step : step]
        # T2 (bytes 32..39): the kernel's arrival time as an era timestamp (RFC 5905 §6).
        mask = 0xFFFFFFFFFFFFFFFF
        if offset:
            served = array.array("Q", [(t + offset) & mask for t in arrivals])
            if _LITTLE_ENDIAN:
                served.byteswap()
            reply_words[4:n:6] = memoryview(served)
        else:
            era_seconds = array.array("I", [(seconds[0] + epoch) & 0xFFFFFFFF]) * count
            fraction_column = array.array("I", fractions)
            if _LITTLE_ENDIAN:
                era_seconds.byteswap()
                fraction_column.byteswap()
            reply_halves = self._reply_halves
            reply_halves[8 : count * 12 : 12] = memoryview(era_seconds)
            reply_halves[9 : count * 12 : 12] = memoryview(fraction_column)
        # T2 is odd, as respond() makes it (a marker for interleaved mode, lockstep.ntp.interleave).
        sdata[39 : count * 48 : 48] = sdata[39 : count * 48 : 48].translate(_ODD)
        replies = count
        kissed: list[int] = []
        if refused:
            replies, kissed = self._refuse(batch, count, refused, clients, arrivals)
        # T3 (bytes 40..47): one clock reading for the whole batch, just before sendmmsg; even,
        # and after every T2 of the batch, as respond() makes it.
        latest = max(arrivals) + offset if offset else ((seconds[0] + epoch) << 32) + max(fractions)
        stamp = max((from_unix_ns(time.time_ns()) + offset) & ~1, (latest | 1) + 1)
        sent = array.array("Q", [stamp & mask])
        if _LITTLE_ENDIAN:
            sent.byteswap()
        reply_words[5:n:6] = memoryview(sent * count)
        for i in kissed:  # a kiss's receive and transmit timestamps stay zero
            reply_words[i * 6 + 5] = 0
        core.counters.replied += count - len(refused or ())
        self.send_errors += replies - batch.send(replies)
        return True

    def _client_keys(self, batch: mmsg.DatagramBatch, count: int) -> list[int]:
        """The senders of receive slots 0..count-1 as client keys (:mod:`lockstep.ntp.limiter`):
        IPv4 addresses as ints, IPv6 ones as ints plus ``IPV6_KEY``, read with strided copies."""
        if batch.address_length == 16:  # sockaddr_in: the address is bytes 4..7
            per_slot = mmsg.ADDRESS_SIZE // 4
            column = array.array("I", bytes(4 * count))
            memoryview(column)[:] = self._address_halves[1 : count * per_slot : per_slot]
            if _LITTLE_ENDIAN:
                column.byteswap()
            return column.tolist()
        per_slot = mmsg.ADDRESS_SIZE // 8  # sockaddr_in6: the address is bytes 8..23
        high = array.array("Q", bytes(8 * count))
        low = array.array("Q", bytes(8 * count))
        memoryview(high)[:] = self._address_words[1 : count * per_slot : per_slot]
        memoryview(low)[:] = self._address_words[2 : count * per_slot : per_slot]
        if _LITTLE_ENDIAN:
            high.byteswap()
            low.byteswap()
        return [IPV6_KEY | h << 64 | lo for h, lo in zip(high.tolist(), low.tolist(), strict=True)]

    def _refuse(
        self,
        batch: mmsg.DatagramBatch,
        count: int,
        refused: list[tuple[int, KissCode]],
        clients: list[int],
        arrivals: list[int],
    ) -> tuple[int, list[int]]:
        """Answer the requests the limiter refused as :meth:`NtpServer.respond` would: a kiss in
        their send slot, or no reply (the later replies and their addresses move down). Returns
        how many send slots are now in use and which of them hold kisses."""
        core = self.core
        rdata = batch.rdata
        sdata = batch.sdata
        slot = batch.max_datagram
        dropped = []
        kissed = []
        for i, code in refused:
            answer = core.refuse(rdata[i * slot : i * slot + 48], clients[i], arrivals[i], code)
            if type(answer) is bytes:
                sdata[i * 48 : i * 48 + 48] = answer
                kissed.append(i)
            else:
                dropped.append(i)
        self._prefix = b""  # some send slots no longer start with the prefix
        if not dropped:
            return count, kissed
        raddr = batch.raddr
        size = mmsg.ADDRESS_SIZE
        length = batch.address_length
        gone = set(dropped)
        out = dropped[0]
        moved_kisses = [i for i in kissed if i < out]
        for i in range(out + 1, count):
            if i in gone:
                continue
            sdata[out * 48 : out * 48 + 48] = sdata[i * 48 : i * 48 + 48]
            raddr[out * size : out * size + length] = raddr[i * size : i * size + length]
            if i in kissed:
                moved_kisses.append(out)
            out += 1
        return out, moved_kisses

    def _answer_each(
        self, batch: mmsg.DatagramBatch, count: int, indices: Iterable[int] | None = None
    ) -> None:
        """Answer the batch (or the datagrams of it at ``indices``, in order) one
        :meth:`NtpServer.respond` call per datagram (the general path).

        Replies go out from send slot i to the address in receive slot i, so when every
        datagram is answered no address is copied; a dropped (or skipped) datagram shifts the
        later ones down.
        """
        self._prefix = b""  # the send slots are overwritten: the fast path rewrites its prefix
        clock = time.time_ns
        now = from_unix_ns(clock())
        core = self.core
        respond = core.respond
        received = memoryview(batch.rdata)
        raddr = batch.raddr
        sdata = batch.sdata
        slot = batch.max_datagram
        address_size = mmsg.ADDRESS_SIZE
        address_length = batch.address_length
        lengths = batch.lengths
        stride = mmsg.STRIDE
        length_index = mmsg.MSG_LEN_INDEX
        # The client key (for rate limits and deny lists, see lockstep.ntp.limiter) is the IP
        # address as an int: bytes 4..8 of a sockaddr_in, 8..24 of a sockaddr_in6 plus IPV6_KEY.
        # Without limits it is not even extracted.
        # Interleaved mode keys its state by client too: a request with an odd origin timestamp
        # (see lockstep.ntp.interleave) gets its key either way.
        key_start, key_end, family_key = (4, 8, 0) if address_length == 16 else (8, 24, IPV6_KEY)
        needs_key = core.rate_limit is not None or bool(core.deny)
        stamped = False
        offset = core.clock_offset
        long_replies = self._long_replies
        send_long_by = 0
        # Basic replies get their T3 again just before they are sent (respond() read it before
        # building them): (send slot, served arrival time) of each, for _late_transmit_time.
        late: list[tuple[int, int]] = []
        control = batch.control_words
        control_length_index = mmsg.CONTROLLEN_INDEX
        control_words = mmsg.CONTROL_SIZE // 8
        epoch = UNIX_EPOCH_SECONDS << 32
        half_ns = 500_000_000
        out = 0
        for i in range(count) if indices is None else indices:
            start = i * slot
            data = received[start : start + lengths[i * stride + length_index]]
            address = i * address_size
            key = (
                int.from_bytes(raddr[address + key_start : address + key_end], "big") | family_key
                if needs_key or (len(data) > 31 and data[31] & 1)
                else None
            )
            # T2: the kernel's arrival time (SO_TIMESTAMPING) when present, else the batch's
            # read time; T3: the clock now, as late as this design allows before sendmmsg.
            # (from_unix_ns, inlined: this loop is the server's hot path)
            arrival = now
            if lengths[i * stride + control_length_index]:
                word = i * control_words
                arrival = (
                    epoch
                    + (((control[word + 2] * 1_000_000_000 + control[word + 3]) << 32) + half_ns)
                    // 1_000_000_000
                )
            read_ns = clock()
            reply = respond(data, key, arrival, epoch + ((read_ns << 32) + half_ns) // 1_000_000_000)
            if type(reply) is bytes:
                if len(reply) != 48:  # an NTS reply (RFC 8915): longer, from the long slots
                    long_replies.add(reply, raddr[address : address + address_length])
                    # Its T3 is sealed in: send before it grows _LONG_REPLY_WAIT_NS stale.
                    if long_replies.used == 1:
                        send_long_by = read_ns + _LONG_REPLY_WAIT_NS
                    elif read_ns >= send_long_by:
                        self.send_errors += long_replies.send()
                    continue
                # A basic reply: origin = the request's transmit timestamp, and a T3 (a kiss has
                # none; an interleaved reply's T3 is an earlier reply's and stays).
                basic = reply[24:32] == data[40:48] and reply[40:48] != _NO_TIMESTAMP
                if data[31] & 1 and reply[1] and interleave_capable(data):
                    # A client that may use interleaved mode: learn when this reply leaves.
                    if basic:
                        late_read = from_unix_ns(clock())
                        reply = reply[:40] + _late_transmit_time(arrival + offset, late_read + offset)
                        # Until the kernel says when it left, the time to serve for it is this.
                        core.transmitted(key, int.from_bytes(reply[32:40], "big"), late_read)
                    self._send_stamped(reply, raddr[address : address + address_length], key)
                    stamped = True
                    continue
                if out != i:
                    target = out * address_size
                    raddr[target : target + address_length] = raddr[address : address + address_length]
                sdata[out * 48 : out * 48 + 48] = reply
                if basic:
                    late.append((out, arrival + offset))
                out += 1
        if long_replies.used:
            self.send_errors += long_replies.send()
        if out == 1 and late:  # a lone basic reply, what a lightly loaded server sends
            self._send_lone_basic(bytes(sdata[:40]), late[0][1], offset, raddr[:address_length])
        elif out:
            now = from_unix_ns(clock()) + offset
            for index, served in late:
                sdata[index * 48 + 40 : index * 48 + 48] = _late_transmit_time(served, now)
            self.send_errors += out - batch.send(out)
        if stamped:
            self._read_transmit_times()  # on loopback (and most drivers) they are there already

    def _send_lone_basic(self, head: bytes, served_arrival: int, offset: int, sockaddr: bytearray) -> None:
        """Send one basic reply, ``head`` (its first 40 bytes) and a T3 read as late as can be:
        in C right before ``sendto`` when the compiled module was built, else in Python with the
        address converted first and the socket module's ``sendto`` right after the clock
        reading. The reply reached the client ≈ 8 µs after its T3 through ctypes' ``sendmmsg``,
        ≈ 5 µs through Python's ``sendto``, ≈ 3 µs from C (chronyd: ≈ 3 µs; docs/benchmarks.md)."""
        if self._compiled_send_basic is not None:
            try:
                self._compiled_send_basic(self.sock.fileno(), head, sockaddr, offset)
            except OSError:
                self.send_errors += 1
            return
        address = _address(sockaddr)
        after_receive = (served_arrival | 1) + 1  # T3 even and after T2, as respond() makes it
        sendto = self.sock.sendto
        clock = time.time_ns
        try:
            stamp = _UNIX_EPOCH + offset + ((clock() << 32) + 500_000_000) // 1_000_000_000  # from_unix_ns
            sendto(head + (max(stamp & ~1, after_receive) & _WIRE).to_bytes(8, "big"), address)
        except OSError:
            self.send_errors += 1

    def _send_one(self, reply: bytes, sockaddr: bytearray) -> None:
        """Send one reply to a raw sockaddr_in / sockaddr_in6 taken from a receive slot."""
        try:
            self.sock.sendto(reply, _address(sockaddr))
        except OSError:
            self.send_errors += 1

    def _send_stamped(self, reply: bytes, sockaddr: bytearray, client: Hashable) -> None:
        """Send one reply asking the kernel for its software transmit timestamp, which comes
        back on the error queue under the next SOF_TIMESTAMPING_OPT_ID number (the kernel counts
        only the sends that ask); :meth:`_read_transmit_times` hands it to the core."""
        if not self._transmit_stamps:
            self._send_one(reply, sockaddr)
            return
        try:
            self.sock.sendmsg([reply], _ASK_TRANSMIT_STAMP, 0, _address(sockaddr))
        except OSError:
            self.send_errors += 1
            return
        stamps = self._stamped
        stamps[self._next_stamp] = (client, int.from_bytes(reply[32:40], "big"))
        self._next_stamp += 1
        if len(stamps) > _MAX_STAMPS_AWAITED:  # lost timestamps: forget the oldest sends
            del stamps[next(iter(stamps))]

    def _read_transmit_times(self) -> None:
        """Take the transmit timestamps the kernel queued (RFC 9769: our replies' real send
        times) from the socket's error queue to the core."""
        receive = self.sock.recvmsg
        stamps = self._stamped
        while True:
            try:
                _, ancillary, _, _ = receive(
                    0, _ERROR_QUEUE_CONTROL, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
                )
            except OSError:  # nothing (more) queued
                return
            sent_ns = identifier = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == mmsg.SO_TIMESTAMPING and len(payload) >= 16:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                    sent_ns = seconds * 1_000_000_000 + nanoseconds
                elif (level, kind) in _RECVERR and len(payload) >= _EXTENDED_ERROR.size:
                    _, origin, _, _, _, _, data = _EXTENDED_ERROR.unpack_from(payload)
                    if origin == _SO_EE_ORIGIN_TIMESTAMPING:
                        identifier = data
            if sent_ns and identifier is not None:
                sent = stamps.pop(identifier, None)
                if sent is not None:
                    self.core.transmitted(sent[0], sent[1], from_unix_ns(sent_ns))

    def serve_blocking(self, stop: threading.Event) -> None:
        """Serve on the calling thread with blocking ``recvmmsg`` until ``stop`` is set.

        No event loop is involved: each system call waits for at least one datagram and returns
        all that are queued (MSG_WAITFORONE), which is the cheapest way to serve from Python.
        The socket wakes every 0.2 s (SO_RCVTIMEO) to look at ``stop``.
        """
        batch = self._mmsg
        if batch is None:
            raise RuntimeError("blocking service needs recvmmsg (Linux)")
        self.sock.setblocking(True)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        while not stop.is_set():
            try:
                count = batch.receive(wait=True)
            except OSError:
                continue
            if count:
                self._answer(batch, count)
            if self._stamped:  # transmit timestamps the kernel queued after we looked
                self._read_transmit_times()

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        """Run :meth:`serve_blocking` on a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.serve_blocking, args=(stop,), name="ntp-server", daemon=True)
        thread.start()
        return thread, stop


async def serve(
    core: NtpServer,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[UdpServer], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled (or until ``stop`` is set)."""
    server = UdpServer(core, open_udp_socket(host, port, reuse_port=reuse_port))
    await serve_on(server, on_ready=on_ready, stop=stop)


async def serve_on(
    server: UdpServer,
    *,
    on_ready: Callable[[UdpServer], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``server``'s socket in the running loop until cancelled (or until ``stop`` is set)."""
    server.start()
    logger.info("serving NTP on %s port %d", *server.address)
    if on_ready is not None:
        on_ready(server)
    try:
        if stop is None:
            await asyncio.Future()
        else:
            await stop.wait()
    finally:
        server.close()


PR_SET_PDEATHSIG = 1  # prctl(2) option: a signal for this process when its parent dies


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGTERM this process when ``parent`` dies (Linux ``PR_SET_PDEATHSIG``).

    Exits at once if ``parent`` is already gone (the death signal only covers later deaths).
    Elsewhere there is no such call: workers then rely on the parent terminating them.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(0)


def _worker(make_core: Callable[[], NtpServer], host: str, port: int, parent: int) -> None:
    # A worker ends with SIGTERM (the default action) or SIGINT, whatever the parent set up
    # before forking, and when the parent dies for any reason (even SIGKILL).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent(parent)
    server = UdpServer(make_core(), open_udp_socket(host, port, reuse_port=True))
    with contextlib.suppress(KeyboardInterrupt):
        if server.batched:
            server.serve_blocking(threading.Event())
        else:  # the same socket, served from an event loop (no recvmmsg here)
            asyncio.run(serve_on(server))


def serve_workers(
    make_core: Callable[[], NtpServer], host: str, port: int, workers: int
) -> list[BaseProcess]:
    """Start ``workers`` processes sharing the port with SO_REUSEPORT; return them (started).

    Each worker keeps its own rate-limit table; the kernel sends a given client address and port
    to the same worker, so per-client limits still hold for clients that keep their port.
    Workers die with the calling process (:func:`die_with_parent`), however it ends.
    """
    context = multiprocessing.get_context("fork")
    processes: list[BaseProcess] = []
    for _ in range(workers):
        process = context.Process(target=_worker, args=(make_core, host, port, os.getpid()), daemon=True)
        process.start()
        processes.append(process)
    return processes
