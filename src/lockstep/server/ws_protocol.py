"""uvicorn's WebSocket protocol, reading ahead a few frames before it stops reading a socket.

uvicorn's websockets-sansio protocol stops reading a socket after every frame it receives, until the
app takes the frame: two ``epoll_ctl`` system calls (unregister, register) per request, about a
tenth of the server's CPU per delivered message under load (docs/benchmarks.md). Clients here send
one request and wait for its reply, so the app takes each frame before the next arrives, and the
stop protects nothing. This protocol stops reading only once ``READ_AHEAD_FRAMES`` frames wait, and
uvicorn's own ``receive`` resumes once the app took them all, as before.

Memory per socket stays bounded: at most ``READ_AHEAD_FRAMES`` frames of ``ws_max_size`` (64 KiB)
wait, plus what one read of the socket held, as before.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

READ_AHEAD_FRAMES = 4
"""Four frames of 64 KiB: as much as one read of the socket (asyncio reads up to 256 KiB) already queues."""


class ReadAheadProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        was_paused = self.read_paused
        self.read_paused = True  # uvicorn pauses unless it believes it already has
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = was_paused
        if not was_paused and self.queue.qsize() >= READ_AHEAD_FRAMES:
            self.read_paused = True
            self.transport.pause_reading()
