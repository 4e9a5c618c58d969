"""A second way into a test server that the server sees as another network (linking.md §6.5).

``from_other_network(server_url)`` listens on a free 127.0.0.1 port and relays every TCP connection to
the server from the source address 127.0.0.2. A server started with ``--separate-network 127.0.0.2/32``
then counts whoever comes through it as being on a network of its own, while the page's origin stays a
127.0.0.1 one the server answers (its Host and WebSocket Origin checks accept the address they arrive
on). Loopback only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

OTHER_ADDRESS = "127.0.0.2"
SEPARATE_NETWORK = ("--separate-network", f"{OTHER_ADDRESS}/32")
"""The `lockstep serve` options that make OTHER_ADDRESS a network of its own."""


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def from_other_network(server_url: str) -> Iterator[str]:
    """The URL of the relay: the server's pages and socket, reached from OTHER_ADDRESS."""
    target = urlsplit(server_url)
    assert target.hostname == "127.0.0.1" and target.port is not None
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sockets: list[socket.socket] = [listener]

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection(
                    ("127.0.0.1", target.port), source_address=(OTHER_ADDRESS, 0)
                )
                sockets.extend((client, upstream))
                for pair in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=pair, daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread.join(timeout=5)
