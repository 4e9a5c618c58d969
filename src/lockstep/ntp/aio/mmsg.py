"""Batched UDP I/O with Linux ``recvmmsg``/``sendmmsg`` through ctypes.

Python's socket module has no batched calls, and one ``recvfrom`` + one ``sendto`` per datagram
costs more in interpreter overhead than in the kernel. :class:`DatagramBatch` keeps ``size``
receive slots and ``size`` send slots in fixed ctypes buffers: one ``recvmmsg`` fills up to
``size`` slots, the caller copies replies (all the same length) into send slots together with the
sender's address, and one ``sendmmsg`` answers them all.

Used by the NTP server's fast path and by the throughput benchmark's load generator.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import os
import socket
import sys

MSG_DONTWAIT = 0x40
MSG_WAITFORONE = 0x10000
ADDRESS_SIZE = 128  # sockaddr_storage


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


STRIDE = ctypes.sizeof(_Mmsghdr) // 4  # uint32 words per mmsghdr
MSG_LEN_INDEX = _Mmsghdr.msg_len.offset // 4
CONTROLLEN_INDEX = _Msghdr.msg_controllen.offset // 4  # low word (little-endian size_t)
# Linux timestamping (Documentation/networking/timestamping.rst); Python's socket module does
# not name these. SO_TIMESTAMPING reports software timestamps as struct scm_timestamping (three
# struct timespec, the first the software one), for received datagrams and, when a send asks for
# it, on the error queue for sent ones.
SO_TIMESTAMPING = 37  # SO_TIMESTAMPING_OLD: native timespecs (64-bit on 64-bit Linux)
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
RX_TIMESTAMPING = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
CONTROL_SIZE = socket.CMSG_SPACE(48)  # one struct scm_timestamping


def available() -> bool:
    """Whether batched calls can be used here (Linux with a libc that has them)."""
    return sys.platform == "linux" and _libc() is not None


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            libc.recvmmsg.restype = ctypes.c_int
            libc.sendmmsg.restype = ctypes.c_int
        except (OSError, AttributeError):
            return None
        _LIBC = libc
    return _LIBC


class DatagramBatch:
    """Fixed buffers for ``size`` datagrams in and ``size`` replies of ``reply_size`` bytes out.

    With ``reply_in_place`` send slot i goes to the address in receive slot i (a server answering
    what it read); otherwise to the address written into ``saddr`` slot i. ``send_control``
    bytes per send slot in ``scontrol`` go out as its control messages (e.g. IP_PKTINFO to pick
    a source address), when nonzero.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        size: int = 64,
        max_datagram: int = 1024,
        reply_size: int = 48,
        reply_in_place: bool = False,
        timestamps: bool = False,
        send_control: int = 0,
    ) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("recvmmsg/sendmmsg are not available")
        self._recvmmsg = libc.recvmmsg
        self._sendmmsg = libc.sendmmsg
        self.fd = sock.fileno()
        self.size = size
        self.max_datagram = max_datagram
        self.reply_size = reply_size
        self.address_length = 28 if sock.family == socket.AF_INET6 else 16
        # Receive side: payload and address slots, views for cheap slicing from Python.
        self.rdata = bytearray(size * max_datagram)
        self.raddr = bytearray(size * ADDRESS_SIZE)
        self.sdata = bytearray(size * reply_size)
        self.saddr = bytearray(size * ADDRESS_SIZE)
        # One control slot per datagram for the kernel's receive timestamp (SO_TIMESTAMPING):
        # cmsghdr (len 8, level 4, type 4) then three struct timespec (sec 8, nsec 8), the
        # first being the software timestamp.
        self.timestamps = timestamps
        self.control = bytearray(size * CONTROL_SIZE)
        self.scontrol = bytearray(max(1, size * send_control))
        self._keep = [
            (ctypes.c_char * len(buf)).from_buffer(buf)
            for buf in (self.rdata, self.raddr, self.sdata, self.saddr, self.control, self.scontrol)
        ]
        rdata, raddr, sdata, saddr, control, scontrol = (ctypes.addressof(b) for b in self._keep)
        self._riov = (_Iovec * size)()
        self._siov = (_Iovec * size)()
        self._rmsgs = (_Mmsghdr * size)()
        self._smsgs = (_Mmsghdr * size)()
        for i in range(size):
            self._riov[i].iov_base = rdata + i * max_datagram
            self._riov[i].iov_len = max_datagram
            self._siov[i].iov_base = sdata + i * reply_size
            self._siov[i].iov_len = reply_size
            r = self._rmsgs[i].msg_hdr
            r.msg_name = raddr + i * ADDRESS_SIZE
            # The kernel writes back the real address length (16 or 28 on one socket, always
            # the same), which stays large enough for the next call: no per-call reset.
            r.msg_namelen = ADDRESS_SIZE
            r.msg_iov = ctypes.pointer(self._riov[i])
            r.msg_iovlen = 1
            if timestamps:
                r.msg_control = control + i * CONTROL_SIZE
                r.msg_controllen = CONTROL_SIZE
            s = self._smsgs[i].msg_hdr
            s.msg_name = (raddr if reply_in_place else saddr) + i * ADDRESS_SIZE
            s.msg_namelen = self.address_length
            s.msg_iov = ctypes.pointer(self._siov[i])
            s.msg_iovlen = 1
            if send_control:
                s.msg_control = scontrol + i * send_control
                s.msg_controllen = send_control
        self._rmsgs_ref = ctypes.byref(self._rmsgs)
        #: The receive slots' struct mmsghdr array, as bytes (the compiled NTS path reads it in C).
        self.messages = memoryview(self._rmsgs).cast("B")
        #: msg_len of every receive slot, readable without building ctypes objects.
        self.lengths = self.messages.cast("I")
        self._smsgs_ref = ctypes.byref(self._smsgs)
        #: The control slots as int64 words: [len, level|type, tv_sec, tv_nsec] per datagram.
        self.control_words = memoryview(self.control).cast("q")
        self._used = 0
        self._control_sizes = memoryview(array.array("I", [CONTROL_SIZE]) * size)
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, RX_TIMESTAMPING)

    def receive(self, *, wait: bool = False) -> int:
        """Fill up to ``size`` slots; return how many (0: nothing waiting, or timed out).

        Without ``wait`` it never blocks; with it, it blocks until one datagram arrives (or the
        socket's SO_RCVTIMEO expires) and then takes whatever else is already queued.
        """
        if self.timestamps and self._used:
            # The kernel shrinks msg_controllen to what it wrote: restore it in the used slots
            # (one strided copy; msg_controllen's high word stays 0).
            used = self._used
            self.lengths[CONTROLLEN_INDEX : used * STRIDE : STRIDE] = self._control_sizes[:used]
        flags = MSG_WAITFORONE if wait else MSG_DONTWAIT
        count: int = self._recvmmsg(self.fd, self._rmsgs_ref, self.size, flags, None)
        self._used = max(count, 0)
        if count < 0:
            error = ctypes.get_errno()
            if error in (11, 4):  # EAGAIN, EINTR
                return 0
            raise OSError(error, os.strerror(error))
        return count

    def received_ns(self, index: int) -> int | None:
        """The kernel's receive time of slot ``index`` (Unix ns), if it reported one."""
        if self.lengths[index * STRIDE + CONTROLLEN_INDEX] < CONTROL_SIZE:
            return None
        words = self.control_words
        base = index * (CONTROL_SIZE // 8)
        return words[base + 2] * 1_000_000_000 + words[base + 3]

    def length(self, index: int) -> int:
        """Bytes received in slot ``index`` by the last :meth:`receive`."""
        return self.lengths[index * STRIDE + MSG_LEN_INDEX]

    def send(self, count: int) -> int:
        """Send send-slots 0..count-1 (each ``reply_size`` bytes); return how many went out."""
        return _send_all(self._sendmmsg, self.fd, self._smsgs, count)


class ReplySlots:
    """Send slots for replies of any length up to ``max_datagram`` bytes, each to its own
    address, sent with one ``sendmmsg``: the NTS replies (RFC 8915) of a server's batch, which
    are longer than the 48-byte slots of :class:`DatagramBatch` and differ in length."""

    def __init__(self, sock: socket.socket, *, size: int = 64, max_datagram: int = 1024) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("recvmmsg/sendmmsg are not available")
        self._sendmmsg = libc.sendmmsg
        self.fd = sock.fileno()
        self.size = size
        self.max_datagram = max_datagram
        self.address_length = 28 if sock.family == socket.AF_INET6 else 16
        self.data = bytearray(size * max_datagram)
        self.addresses = bytearray(size * ADDRESS_SIZE)
        self._keep = [(ctypes.c_char * len(buf)).from_buffer(buf) for buf in (self.data, self.addresses)]
        data, addresses = (ctypes.addressof(b) for b in self._keep)
        self._iov = (_Iovec * size)()
        self._msgs = (_Mmsghdr * size)()
        for i in range(size):
            self._iov[i].iov_base = data + i * max_datagram
            m = self._msgs[i].msg_hdr
            m.msg_name = addresses + i * ADDRESS_SIZE
            m.msg_namelen = self.address_length
            m.msg_iov = ctypes.pointer(self._iov[i])
            m.msg_iovlen = 1
        self._iov_words = memoryview(self._iov).cast("B").cast("Q")  # iov_base, iov_len per slot
        #: Slots filled since the last :meth:`send`.
        self.used = 0

    def add(self, reply: bytes, sockaddr: bytes | bytearray | memoryview) -> None:
        """Put ``reply`` for the raw sockaddr ``sockaddr`` into the next free slot (the caller
        sends when all are used)."""
        if len(reply) > self.max_datagram:  # a server never replies with more than it read
            raise ValueError(f"a reply of {len(reply)} bytes does not fit a {self.max_datagram}-byte slot")
        i = self.used
        start = i * self.max_datagram
        self.data[start : start + len(reply)] = reply
        self._iov_words[2 * i + 1] = len(reply)
        address = i * ADDRESS_SIZE
        self.addresses[address : address + self.address_length] = sockaddr
        self.used = i + 1

    def slot(self, index: int) -> tuple[bytes, bytes]:
        """The reply in slot ``index`` and the raw sockaddr it goes to (for tests and logs)."""
        start = index * self.max_datagram
        address = index * ADDRESS_SIZE
        return (
            bytes(self.data[start : start + self._iov_words[2 * index + 1]]),
            bytes(self.addresses[address : address + self.address_length]),
        )

    def send(self) -> int:
        """Send the filled slots; return how many did not go out (a full socket buffer drops
        the rest, as UDP may)."""
        count = self.used
        self.used = 0
        return count - _send_all(self._sendmmsg, self.fd, self._msgs, count)


def _send_all(sendmmsg: ctypes._NamedFuncPointer, fd: int, msgs: ctypes.Array[_Mmsghdr], count: int) -> int:
    """``sendmmsg`` messages 0..count-1 of ``msgs``, again for what a call left; how many went out."""
    sent = 0
    while sent < count:
        done: int = sendmmsg(fd, ctypes.byref(msgs, sent * ctypes.sizeof(_Mmsghdr)), count - sent, 0)
        if done <= 0:
            return sent  # a full socket buffer or an error: drop the rest, as UDP may
        sent += done
    return sent
