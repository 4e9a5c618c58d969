"""Calls from the terminal: the call core (:mod:`lockstep.calls`) driven over a :class:`Messenger`,
media with aiortc (docs/protocol/messaging.md §14).

This is the thin asyncio shell around :class:`~lockstep.calls.book.CallBook`: it turns pushed
``message`` events into call signals (their envelopes decrypted and checked by the messenger), feeds
them, the peer connection's state and the time to the state machine, and carries out the actions it
returns — sending signals as ``call`` envelopes, applying descriptions to the ``RTCPeerConnection``.
aiortc gathers every candidate before a description is made, so the terminal never trickles; it does
apply candidates a browser trickles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaBlackhole, MediaPlayer, MediaRecorder
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from lockstep.calls.book import BUSY_STATES, CallBook
from lockstep.calls.errors import SignalError
from lockstep.calls.machine import (
    Action,
    AnswerAtOnce,
    Call,
    CallRecord,
    CallState,
    Ended,
    Ignored,
    Party,
    RemoteCandidates,
    RemoteDescription,
    Send,
)
from lockstep.calls.signals import Candidate, Media, to_body
from lockstep.client.errors import ClientError, ServerRefused
from lockstep.client.messenger import Messenger, Received
from lockstep.e2e.envelope import Kind
from lockstep.link.encoding import b64u_encode
from lockstep.server.errors import ErrorCode

log = logging.getLogger(__name__)

HANG_UP_ON_EXIT_S = 5.0
"""How long a stopped ``lockstep call`` may take to send its hang-up before it exits anyway."""


class UnknownHandle(ClientError):
    """The handle names no account on this server."""


@dataclass(frozen=True, slots=True)
class CallOptions:
    play: Path | None = None
    """A sound (or video) file to send, looped; default silence (and test frames for video)."""
    record: Path | None = None
    """Where to write what the peer sends (the container follows the suffix, e.g. ``.wav``)."""
    host_addresses: tuple[str, ...] = ()
    """Gather host candidates on these addresses only (default: every interface but loopback)."""
    relay_only: bool = False
    """Use only TURN relay candidates (``iceTransportPolicy: "relay"``)."""


@dataclass
class CallOutcome:
    record: CallRecord
    peer_handle: str
    connected_after_ms: int | None = None
    """From dialling (or answering) to the media connecting."""
    first_audio_after_ms: int | None = None
    """From dialling (or answering) to the first audio frame from the peer."""
    reason: str | None = None
    """Why a failed call failed, when it was not the media."""


@contextlib.contextmanager
def host_addresses(addresses: tuple[str, ...]) -> Iterator[None]:
    """Make aioice gather host candidates on ``addresses`` only. aioice has no setting for this (it
    takes every interface and skips 127.0.0.1), and tests must keep to loopback: its one lookup function
    is swapped for the duration."""
    if not addresses:
        yield
        return
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


@dataclass
class _Media:
    """One call's peer connection, what it sends and where what it receives goes."""

    connection: RTCPeerConnection
    recorder: MediaRecorder | MediaBlackhole
    player: MediaPlayer | None = None
    recording: bool = False
    first_audio: asyncio.Future[int] = field(default_factory=asyncio.Future)

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must not hide how the call ended
            await self.recorder.stop()
        await self.connection.close()
        if self.player is not None and self.player.audio is not None:
            self.player.audio.stop()


class Phone:
    """Places and answers calls for one device, one at a time."""

    def __init__(self, messenger: Messenger, options: CallOptions | None = None) -> None:
        self.messenger = messenger
        self.options = options or CallOptions()
        self.book = CallBook(Party(messenger.account_id, messenger.device_id))
        self._inputs: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.on_state: Callable[[Call], None] = lambda call: None
        self.on_connected: Callable[[RTCPeerConnection], None] = lambda connection: None
        self.failure: str | None = None
        """Why the last call failed, when something other than the media made it fail."""

    def now(self) -> int:
        return self.messenger.session.clock.now_ms()

    # --- dialling and answering --------------------------------------------------------------------
    async def dial(
        self, handle: str, media: Media = Media.AUDIO, seconds: float | None = None
    ) -> CallOutcome:
        """Call ``handle``; returns once the call ended (``seconds`` after the media connected, if set)."""
        try:
            peer = await self.messenger.contact(handle=handle)
        except ClientError as error:
            cause = error.__cause__
            if isinstance(cause, ServerRefused) and cause.code == ErrorCode.ACCOUNT_UNKNOWN:
                raise UnknownHandle(str(error)) from error
            raise
        started = self.now()
        with host_addresses(self.options.host_addresses):
            call_media = await self._media(media)
            offer = await call_media.connection.createOffer()
            await call_media.connection.setLocalDescription(offer)
            call, actions = self.book.dial(
                b64u_encode(secrets.token_bytes(16)),
                media,
                call_media.connection.localDescription.sdp,
                peer.account.account_id,
                started,
            )
            return await self._run(call, call_media, actions, peer.account.handle, started, seconds)

    async def answer_next(
        self, wait: float, seconds: float | None = None, *, decline: bool = False
    ) -> CallOutcome | None:
        """Answer (or ``decline``) the next call that rings within ``wait`` seconds; None if none did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self._start_reading()
        while (remaining := deadline - loop.time()) > 0:
            try:
                kind, value = await asyncio.wait_for(self._inputs.get(), timeout=remaining)
            except TimeoutError:
                break
            if kind != "events":
                continue
            for call, actions in await self._signals(value):
                await self._carry_out(call, None, actions)
                if call.state is CallState.RINGING_IN and decline:
                    record = await self._carry_out(call, None, call.decline(self.now()))
                    handle = self.messenger.handle_of(call.peer_account) or call.peer_account
                    return CallOutcome(record or _unreachable(), handle)
                if call.state is CallState.RINGING_IN:
                    return await self._answer(call, seconds)
        return None

    async def follow(self, wait: float) -> list[CallRecord]:
        """Watch calls without answering (a device that rings, or shows a call on another device) for up
        to ``wait`` seconds, or until every call it saw has ended; returns the records of those that did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self._start_reading()
        records: list[CallRecord] = []
        while (remaining := deadline - loop.time()) > 0:
            dues = [due for call in self.book.calls.values() if (due := call.timer()) is not None]
            if dues:
                remaining = min(remaining, max(0.0, (min(dues) - self.now()) / 1000))
            try:
                kind, value = await asyncio.wait_for(self._inputs.get(), timeout=remaining)
            except TimeoutError:
                for call in self.book.calls.values():
                    if (
                        record := await self._carry_out(call, None, call.handle_timer(self.now()))
                    ) is not None:
                        records.append(record)
                continue
            if kind == "lost":
                raise value
            for call, actions in await self._signals(value):
                if (record := await self._carry_out(call, None, actions)) is not None:
                    records.append(record)
            if self.book.calls and all(c.state is CallState.ENDED for c in self.book.calls.values()):
                break
        return records

    async def _answer(self, call: Call, seconds: float | None) -> CallOutcome:
        started = self.now()
        peer = await self.messenger.contact(account_id=call.peer_account)
        with host_addresses(self.options.host_addresses):
            call_media = await self._media(call.media, remote_offer=call.remote_sdp)
            answer = await call_media.connection.createAnswer()
            await call_media.connection.setLocalDescription(answer)
            await self._start_recording(call_media)
            actions = call.answer(call_media.connection.localDescription.sdp, self.now())
            return await self._run(call, call_media, actions, peer.account.handle, started, seconds)

    # --- the peer connection -------------------------------------------------------------------------
    async def _media(self, media: Media, remote_offer: str | None = None) -> _Media:
        servers = (await self.messenger.session.connection.request("calls.ice_servers"))["ice_servers"]
        configuration = RTCConfiguration(
            # Never None: aiortc would fall back to a public STUN server.
            iceServers=[RTCIceServer(s["urls"], s.get("username"), s.get("credential")) for s in servers],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY
            if self.options.relay_only
            else RTCIceTransportPolicy.ALL,
        )
        connection = RTCPeerConnection(configuration)
        record = self.options.record
        recorder: MediaRecorder | MediaBlackhole = MediaRecorder(str(record)) if record else MediaBlackhole()
        call_media = _Media(connection, recorder)
        player = MediaPlayer(str(self.options.play), loop=True) if self.options.play else None
        call_media.player = player

        @connection.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                call_media.recorder.addTrack(_FirstFrame(track, call_media.first_audio, self.now))
            elif record is None or record.suffix not in (".wav", ".ogg", ".mp3"):
                call_media.recorder.addTrack(track)

        @connection.on("connectionstatechange")
        def on_state() -> None:
            self._inputs.put_nowait(("media", connection.connectionState))

        if remote_offer is not None:
            await connection.setRemoteDescription(RTCSessionDescription(remote_offer, "offer"))
        audio: MediaStreamTrack = player.audio if player and player.audio else AudioStreamTrack()
        connection.addTrack(audio)
        if media is Media.VIDEO:
            connection.addTrack(player.video if player and player.video else VideoStreamTrack())
        return call_media

    async def _start_recording(self, call_media: _Media) -> None:
        if not call_media.recording:
            call_media.recording = True
            await call_media.recorder.start()

    # --- the loop ----------------------------------------------------------------------------------
    def _start_reading(self) -> None:
        """Read pushed events from now on, after what was queued before (an offer sent while this
        device was connecting is in its queue, not in an event)."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
            self._inputs.put_nowait(("events", []))

    async def _read(self) -> None:
        connection = self.messenger.session.connection
        try:
            while True:
                event = await connection.next_event()
                self._inputs.put_nowait(("events", [event, *connection.drain_events()]))
        except Exception as error:  # the call loop raises it: the connection is gone
            self._inputs.put_nowait(("lost", error))

    def _in_call_with(self, account_id: str) -> Call | None:
        return next(
            (c for c in self.book.calls.values() if c.peer_account == account_id and c.state in BUSY_STATES),
            None,
        )

    def _ours(self, message: Received) -> bool:
        """Call signals, and what could not be decrypted from the account we are calling or talking to."""
        if message.kind is Kind.CALL:
            return True
        return (
            message.kind is Kind.UNDECRYPTABLE
            and message.group_id is None
            and self._in_call_with(message.sender_account) is not None
        )

    async def _signals(self, events: list[dict[str, Any]]) -> list[tuple[Call, list[Action]]]:
        """Hand pushed events to the messenger; route the call signals among what it opened. A message
        from the peer that could not be decrypted during a call fails the call, with the reason: the
        signalling was changed on the way, and going on could mean talking to someone else."""
        if events:
            await self.messenger.handle_events(events)
        else:
            await self.messenger.fetch()
        routed: list[tuple[Call, list[Action]]] = []
        for message in self.messenger.take_unreported(self._ours):
            if message.kind is Kind.UNDECRYPTABLE:
                failing = self._in_call_with(message.sender_account)
                if failing is not None:
                    handle = self.messenger.handle_of(message.sender_account) or message.sender_account
                    self.failure = (
                        f"a call message from @{handle} could not be decrypted ({message.error}); it was "
                        "changed on the way, so the call was ended"
                    )
                    log.warning("call %s: %s", failing.call_id, self.failure)
                    routed.append((failing, failing.fail(self.now())))
                continue
            call, actions = self._route(message)
            for action in actions:
                if isinstance(action, Ignored):
                    log.info("call signal from device %s ignored: %s", message.sender_device, action.reason)
            if call is not None:
                routed.append((call, [a for a in actions if not isinstance(a, Ignored)]))
        return routed

    def _route(self, message: Received) -> tuple[Call | None, list[Action]]:
        try:
            return self.book.arrived(
                message.body,
                Party(message.sender_account, message.sender_device),
                message.conversation or "",
                message.timestamp or message.server_time,
                self.now(),
            )
        except SignalError as error:  # the reason only, never the description or candidate itself
            log.warning("dropped a call signal from device %s: %s", message.sender_device, error)
            return None, []

    async def _run(
        self,
        call: Call,
        call_media: _Media,
        actions: list[Action],
        peer_handle: str,
        started: int,
        seconds: float | None,
    ) -> CallOutcome:
        self._start_reading()
        loop = asyncio.get_running_loop()
        hang_up_at: float | None = None
        connected_after_ms: int | None = None
        replacement: Call | None = None
        try:
            ended = await self._carry_out(call, call_media, actions)
            while ended is None:
                due = call.timer()
                waits = [(due - self.now()) / 1000 if due is not None else None]
                if hang_up_at is not None:
                    waits.append(hang_up_at - loop.time())
                timeout = min((w for w in waits if w is not None), default=None)
                try:
                    kind, value = await asyncio.wait_for(
                        self._inputs.get(), timeout=max(timeout, 0) if timeout is not None else None
                    )
                except TimeoutError:
                    if hang_up_at is not None and loop.time() >= hang_up_at:
                        ended = await self._carry_out(call, call_media, call.hang_up(self.now()))
                    else:
                        ended = await self._carry_out(call, call_media, call.handle_timer(self.now()))
                    continue
                if kind == "lost":
                    raise value
                if kind == "media":
                    state = str(value)
                    if state == "connected" and call.state in (CallState.CONNECTING, CallState.RECONNECTING):
                        connected_after_ms = self.now() - started
                        self.on_connected(call_media.connection)
                        ended = await self._carry_out(call, call_media, call.media_connected(self.now()))
                        if seconds is not None:
                            hang_up_at = loop.time() + seconds
                    elif state == "failed":
                        ended = await self._carry_out(call, call_media, call.media_failed(self.now()))
                    continue
                for other, other_actions in await self._signals(value):
                    found = await self._carry_out(other, call_media if other is call else None, other_actions)
                    if other is call:
                        ended = found
                    elif AnswerAtOnce(call.call_id) in other_actions:
                        # Glare (§14.9): the peer's call to us won; ours gives way, theirs is answered.
                        replacement = other
                        ended = await self._carry_out(call, call_media, call.give_way(self.now()))
        except asyncio.CancelledError:
            await self._hang_up_on_exit(call)
            raise
        finally:
            await call_media.close()
        if replacement is not None:
            return await self._answer(replacement, seconds)
        first_audio = call_media.first_audio.result() - started if call_media.first_audio.done() else None
        return CallOutcome(ended, peer_handle, connected_after_ms, first_audio, self.failure)

    async def _hang_up_on_exit(self, call: Call) -> None:
        """The process is being stopped (Ctrl-C cancels the main task): say so to the peer and our other
        devices now, so they stop ringing at once instead of at their ring timer (messaging.md §14.6).
        Bounded, so a dead connection cannot hold the exit."""
        if call.state in (CallState.ENDED, CallState.ELSEWHERE):
            return
        try:
            await asyncio.wait_for(self._carry_out(call, None, call.hang_up(self.now())), HANG_UP_ON_EXIT_S)
        except (TimeoutError, ClientError, OSError) as error:
            log.warning("call %s: the hang-up could not be sent: %s", call.call_id, error)

    async def _carry_out(
        self, call: Call, call_media: _Media | None, actions: list[Action]
    ) -> CallRecord | None:
        """Do what the state machine said; the record if the call ended. Another call's actions (a busy
        answer to a second caller) have no media to touch."""
        self.on_state(call)
        for action in actions:
            if isinstance(action, Send):
                peer = await self.messenger.contact(account_id=call.peer_account)
                await self.messenger.send_direct(peer.account.handle, Kind.CALL, to_body(action.signal))
            elif isinstance(action, RemoteDescription) and call_media is not None:
                pc = call_media.connection
                await pc.setRemoteDescription(RTCSessionDescription(action.sdp, action.kind))
                if action.kind == "offer":  # the peer renegotiates: answer on the same connection
                    await pc.setLocalDescription(await pc.createAnswer())
                    await self._carry_out(call, call_media, call.answer(pc.localDescription.sdp, self.now()))
                await self._start_recording(call_media)
            elif isinstance(action, RemoteCandidates) and call_media is not None:
                for candidate in action.candidates:
                    await _add_candidate(call_media.connection, candidate)
            elif isinstance(action, Ended):
                log.info("call %s ended: %s", call.call_id, action.record.summary())
                return action.record
        return None


def _unreachable() -> CallRecord:
    raise AssertionError("a declined call has ended")


async def _add_candidate(connection: RTCPeerConnection, candidate: Candidate) -> None:
    if not candidate.candidate:
        return  # end of candidates: aiortc needs no notice
    ice = candidate_from_sdp(candidate.candidate.removeprefix("candidate:"))
    ice.sdpMid, ice.sdpMLineIndex = candidate.mid, candidate.m_line_index
    await connection.addIceCandidate(ice)


class _FirstFrame(MediaStreamTrack):
    """Passes a received track through, noting when its first frame arrived (set-up time)."""

    def __init__(self, track: MediaStreamTrack, first: asyncio.Future[int], now: Callable[[], int]) -> None:
        super().__init__()
        self.kind = track.kind
        self._track, self._first, self._now = track, first, now

    async def recv(self) -> Any:
        frame = await self._track.recv()
        if not self._first.done():
            self._first.set_result(self._now())
        return frame
