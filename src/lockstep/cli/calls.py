"""`lockstep call` and `lockstep answer`: voice and video calls from the terminal (messaging.md §14.7).

Exit statuses, each with a one-line reason on stderr: 0 the call took place (its summary on stdout),
3 unknown handle, 4 busy, 5 declined, 6 no answer (or, for ``answer``, nothing rang), 7 the call failed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from lockstep.calls.machine import CallRecord, Outcome
from lockstep.calls.signals import Media
from lockstep.cli import CommandError
from lockstep.cli.messaging import state_argument, with_messenger
from lockstep.client.messenger import Messenger

UNKNOWN_HANDLE, BUSY, DECLINED, NO_ANSWER, FAILED = 3, 4, 5, 6, 7
ICE_HOSTS_ENV = "LOCKSTEP_ICE_HOSTS"


def register(subparsers: Any) -> None:
    call = subparsers.add_parser("call", help="call someone (voice, or video with --video)")
    call.add_argument("handle", metavar="HANDLE")
    call.add_argument(
        "--video", action="store_true", help="a video call (test frames unless --play has video)"
    )
    call.add_argument(
        "--seconds",
        type=float,
        metavar="N",
        help="hang up N seconds after the call connects (default: never)",
    )
    _media_arguments(call)
    call.set_defaults(handler=run_call)
    answer = subparsers.add_parser("answer", help="answer the next incoming call")
    answer.add_argument(
        "--wait", type=float, default=60.0, metavar="S", help="how long to wait for a call (default 60)"
    )
    answer.add_argument("--seconds", type=float, metavar="N", help="hang up N seconds after connecting")
    answer.add_argument("--decline", action="store_true", help="decline the next call instead")
    _media_arguments(answer)
    answer.set_defaults(handler=run_answer)


def _media_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--play", type=Path, metavar="FILE", help="send this sound or video file (looped)")
    parser.add_argument("--record", type=Path, metavar="FILE", help="record what the other side sends (.wav)")
    parser.add_argument(
        "--ice-host",
        action="append",
        metavar="ADDRESS",
        help=f"offer host candidates on this address only; repeatable ({ICE_HOSTS_ENV}, comma-separated; "
        "default: every interface)",
    )
    parser.add_argument(
        "--relay-only", action="store_true", help="connect through the server's TURN relay only"
    )
    state_argument(parser)


def _options(args: argparse.Namespace) -> Any:
    from lockstep.client.calls import CallOptions

    hosts = args.ice_host or [h for h in os.environ.get(ICE_HOSTS_ENV, "").replace(",", " ").split() if h]
    if args.play is not None and not args.play.is_file():
        raise CommandError(f"no such file: {args.play}")
    if args.seconds is not None and args.seconds <= 0:
        raise CommandError("--seconds must be positive")
    return CallOptions(args.play, args.record, tuple(hosts), args.relay_only)


def _finish(record: CallRecord, handle: str, failure: str | None = None) -> int:
    """The summary on stdout for a call that took place; otherwise the reason and its exit status."""
    who = f"@{handle}"
    if record.outcome is Outcome.FAILED and failure:
        raise CommandError(f"the call with {who} failed: {failure}", FAILED)
    if record.outcome is Outcome.COMPLETED:
        print(f"{record.summary()} with {who}")
        return 0
    reasons = {
        Outcome.BUSY: (f"{who} is busy in another call", BUSY),
        Outcome.DECLINED: (f"{who} declined the call", DECLINED),
        Outcome.NO_ANSWER: (f"{who} did not answer", NO_ANSWER),
        Outcome.MISSED: (f"{who} hung up before the call connected", NO_ANSWER),
        Outcome.CANCELLED: ("the call was cancelled", NO_ANSWER),
        Outcome.FAILED: (f"the call with {who} failed: the media did not connect or broke off", FAILED),
    }
    message, status = reasons[record.outcome]
    raise CommandError(message, status)


def run_call(args: argparse.Namespace) -> int:
    from lockstep.client.calls import Phone, UnknownHandle

    options = _options(args)

    async def work(messenger: Messenger) -> int:
        try:
            outcome = await Phone(messenger, options).dial(
                args.handle, Media.VIDEO if args.video else Media.AUDIO, args.seconds
            )
        except UnknownHandle as error:
            raise CommandError(str(error), UNKNOWN_HANDLE) from error
        return _finish(outcome.record, outcome.peer_handle, outcome.reason)

    return with_messenger(args, work)


def run_answer(args: argparse.Namespace) -> int:
    from lockstep.client.calls import Phone

    options = _options(args)
    if args.wait < 0:
        raise CommandError("--wait must not be negative")

    async def work(messenger: Messenger) -> int:
        outcome = await Phone(messenger, options).answer_next(args.wait, args.seconds, decline=args.decline)
        if outcome is None:
            raise CommandError(f"no call came in {args.wait:g} s", NO_ANSWER)
        if args.decline:
            kind = "video" if outcome.record.media is Media.VIDEO else "voice"
            print(f"declined a {kind} call from @{outcome.peer_handle}")
            return 0
        return _finish(outcome.record, outcome.peer_handle, outcome.reason)

    return with_messenger(args, work)


def _signal_record(message: Any) -> dict[str, Any]:
    """What ``receive`` keeps of a call signal until its call is over (e2estate ``open_calls``)."""
    return {
        "body": message.body,
        "sender_account": message.sender_account,
        "sender_device": message.sender_device,
        "conversation": message.conversation or "",
        "sent_at": message.timestamp or message.server_time,
        "server_time": message.server_time,
    }


def describe_calls(messenger: Messenger, messages: list[Any], now: int) -> list[tuple[str, dict[str, Any]]]:
    """What ``lockstep receive`` shows of the call signals it fetched: one line (and one JSON object)
    per call whose state changed since the last receive — incoming, in a call on another device, or how
    it ended ("missed voice call").

    A call not over when shown is kept with its signals in the E2E state (``open_calls``) and replayed
    first next time, so a hang-up fetched by a later receive ends the call an earlier one showed ringing;
    a call still ringing past its ring time (the caller vanished) is missed. Each signal is fed at its
    own server time, so a replay judges it as it was then (messaging.md §14.7)."""
    import logging

    from lockstep.calls.book import CallBook
    from lockstep.calls.errors import SignalError
    from lockstep.calls.machine import CallState, Party

    store = messenger.store
    book = CallBook(Party(messenger.account_id, messenger.device_id))
    signals: dict[str, list[dict[str, Any]]] = {}
    shown_before = {kept["call_id"]: kept["shown"] for kept in store.open_calls}
    replayed = [record for kept in store.open_calls for record in kept["signals"]]
    for record in [*replayed, *map(_signal_record, messages)]:
        try:
            call, _ = book.arrived(
                record["body"],
                Party(record["sender_account"], record["sender_device"]),
                record["conversation"],
                record["sent_at"],
                record["server_time"],
            )
        except SignalError as error:
            logging.getLogger(__name__).warning("dropped a call signal: %s", error)
            continue
        if call is not None:
            signals.setdefault(call.call_id, []).append(record)
    for call in book.calls.values():
        call.handle_timer(now)  # rang past its time with no hang-up heard: missed
    shown = []
    open_calls = []
    for call_id, call in book.calls.items():
        if call.state is not CallState.ENDED:
            open_calls.append({"call_id": call_id, "shown": call.state.value, "signals": signals[call_id]})
        if shown_before.get(call_id) == call.state.value or (call.record and not call.record.leaves_entry):
            continue  # shown like this by an earlier receive, or replaced by its twin (glare)
        first = signals[call_id][0]
        peer = f"@{messenger.handle_of(call.peer_account) or call.peer_account}"
        what = "video call" if call.media is Media.VIDEO else "voice call"
        if call.record is not None:
            summary = f"{call.record.summary()} {'to' if call.record.outgoing else 'from'} {peer}"
        elif call.state is CallState.RINGING_IN:
            summary = f"incoming {what} from {peer}"
        else:
            summary = f"{what} with {peer} on another device of yours"
        shown.append(
            (
                summary,
                {
                    "kind": "call",
                    "call_id": call_id,
                    "peer": {
                        "account_id": call.peer_account,
                        "handle": messenger.handle_of(call.peer_account),
                    },
                    "media": call.media.value,
                    "state": call.state.value,
                    "outgoing": call.role.value != "callee",
                    "summary": summary,
                    "ts": first["sent_at"],
                },
            )
        )
    store.open_calls = open_calls
    store.save()
    return shown
