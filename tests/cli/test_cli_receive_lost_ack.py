"""`lockstep receive` whose connection drops after the batch was saved but before it was acknowledged.

Real `lockstep` processes and a real server process; between them a TCP relay that lets everything
through except the client's ``messages.ack`` frame: there it cuts the connection both ways, as a lost
network or a dying server instance would. The next `lockstep receive` must print each message once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from lockstep_cli import lockstep, lockstep_ok, receive_json

MAX_HEADER = 16_384


def _frame(buffer: bytes) -> tuple[int, bytes, int] | None:
    """(opcode, unmasked payload, frame length) of the first whole WebSocket frame, or None.

    RFC 6455 §5.2 (base framing: 7-bit, 16-bit or 64-bit payload length) and §5.3 (a client's
    frames are masked with the 4-byte key that follows the length)."""
    if len(buffer) < 2:
        return None
    length, offset = buffer[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(buffer[2:4]), 4
    elif length == 127:
        length, offset = int.from_bytes(buffer[2:10]), 10
    mask = buffer[offset : offset + 4] if buffer[1] & 0x80 else b"\0\0\0\0"
    offset += 4 if buffer[1] & 0x80 else 0
    if len(buffer) < offset + length:
        return None
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buffer[offset : offset + length]))
    return buffer[0] & 0x0F, payload, offset + length


class AckCutter:
    """Relays 127.0.0.1:port to the server; while ``armed``, cuts a connection at its first ack."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.armed = True
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream, timeout=30)
                threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
                threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                client.sendall(data)
        _end(server, client)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in buffer and len(buffer) < MAX_HEADER:
                buffer += client.recv(65536) or b"\r\n\r\n"
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            # No permessage-deflate, so the relay can read the client's frames (RFC 7692 §5).
            lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"sec-websocket-extensions")]
            server.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            self._relay_frames(client, server, buffer)
        _end(client, server)

    def _relay_frames(self, client: socket.socket, server: socket.socket, buffer: bytes) -> None:
        """Forward the client's frames until it closes or, while armed, sends an ack (held back)."""
        while True:
            while (frame := _frame(buffer)) is not None:
                opcode, payload, size = frame
                if self.armed and opcode == 1 and json.loads(payload).get("op") == "messages.ack":
                    self.cuts += 1
                    return
                server.sendall(buffer[:size])
                buffer = buffer[size:]
            if not (data := client.recv(65536)):
                return
            buffer += data

    def close(self) -> None:
        _end(self.listener)


def _end(*sockets: socket.socket) -> None:
    for each in sockets:
        with contextlib.suppress(OSError):
            each.shutdown(socket.SHUT_RDWR)
        each.close()


@contextlib.contextmanager
def ack_cutter(url: str) -> Iterator[AckCutter]:
    parts = urlsplit(url)
    cutter = AckCutter((parts.hostname or "127.0.0.1", parts.port or 80))
    try:
        yield cutter
    finally:
        cutter.close()


def _use_server(state: Path, url: str) -> None:
    path = state / "state.json"
    document = json.loads(path.read_text())
    document["server_url"] = url
    path.write_text(json.dumps(document))


def test_messages_saved_before_a_cut_ack_are_printed_by_the_next_receive_once(
    server_process, tmp_path: Path
) -> None:
    url = server_process.url
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    texts = [f"message {i}" for i in range(3)]
    for text in texts:
        lockstep_ok("send", "--to", "bob", text, "--state", str(alice))

    with ack_cutter(url) as cutter:
        relayed = f"{urlsplit(url).scheme}://127.0.0.1:{cutter.port}"
        _use_server(bob, relayed)
        cut = lockstep("receive", "--json", "--state", str(bob))
        assert cutter.cuts == 1
        assert cut.returncode != 0 and cut.stdout == ""  # the error is reported, nothing half-shown
        cutter.armed = False
        got = receive_json(bob, wait=0)
        assert [m["body"]["text"] for m in got if m["kind"] == "text"] == texts
        assert receive_json(bob, wait=0) == []
    _use_server(bob, url)
