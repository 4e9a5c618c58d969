"""`lockstep send`, `lockstep receive`, `lockstep group ...`: end-to-end encrypted messaging.

Each works with a primary's or a companion's state folder (``--state``; state.json says the role). By
default the primary's folder is used if there is one, else the companion's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from lockstep.cli import CommandError
from lockstep.cli.common import refusals, run_client, unlock
from lockstep.cli.ids import add_id_argument
from lockstep.client import e2estate
from lockstep.client.e2estate import E2EStore
from lockstep.client.errors import ClientError
from lockstep.client.messenger import Messenger, Received, Sent
from lockstep.client.state import STATE_FILE, DeviceState, default_state_dir, read_private
from lockstep.e2e.actions import (
    EPHEMERAL,
    TARGETED,
    TYPING_FRESH_MS,
    Action,
    Edit,
    Reaction,
    TypingState,
    parse_change,
    parse_signal,
)
from lockstep.e2e.envelope import Kind, ReceiptStatus
from lockstep.e2e.errors import E2EError
from lockstep.e2e.timeline import DELETED_TEXT, UNAVAILABLE_QUOTE, Shown, Timeline
from lockstep.e2e.voice import parse_voice
from lockstep.link.devices import Role

T = TypeVar("T")


def register(subparsers: Any) -> None:
    send = subparsers.add_parser("send", help="send an end-to-end encrypted message or file")
    add_id_argument(send, "--to", metavar="HANDLE", help="@handle, or a group (#name, name or id)")
    attachment = send.add_mutually_exclusive_group()
    attachment.add_argument(
        "--file", type=Path, metavar="PATH", help="attach a file (image, video, document ...)"
    )
    attachment.add_argument(
        "--voice", type=Path, metavar="AUDIO", help="send an audio file (Ogg Opus, WAV ...) as a voice note"
    )
    add_id_argument(
        send,
        "--reply-to",
        metavar="ID",
        help="reply to this message (its id, or its first 6+ characters) in its conversation",
    )
    send.add_argument("text", nargs="?", metavar="TEXT", help="the message (the caption with --file)")
    state_argument(send)
    send.set_defaults(handler=run_send)

    react = subparsers.add_parser("react", help="react to a message with an emoji (or --remove yours)")
    add_id_argument(react, "message", metavar="ID", help="the message's id, or its first 6+ characters")
    react.add_argument("emoji", nargs="?", metavar="EMOJI", help="one emoji, e.g. 👍")
    react.add_argument("--remove", action="store_true", help="take your reaction back")
    state_argument(react)
    react.set_defaults(handler=run_react)

    edit = subparsers.add_parser("edit", help="change the text of your message (for 15 minutes)")
    add_id_argument(edit, "message", metavar="ID", help="the message's id, or its first 6+ characters")
    edit.add_argument("text", metavar="TEXT", help="the new text (the new caption of a file)")
    state_argument(edit)
    edit.set_defaults(handler=run_edit)

    delete = subparsers.add_parser("delete", help="delete your message for everyone (for 60 hours)")
    add_id_argument(delete, "message", metavar="ID", help="the message's id, or its first 6+ characters")
    state_argument(delete)
    delete.set_defaults(handler=run_delete)

    search = subparsers.add_parser("search", help="search the messages this device holds")
    search.add_argument("query", metavar="TEXT", help="words to look for (any case)")
    search.add_argument("--limit", type=int, default=50, metavar="N", help="at most N results (default 50)")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    state_argument(search)
    search.set_defaults(handler=run_search)

    receive = subparsers.add_parser("receive", help="print and acknowledge the messages that arrived")
    receive.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if nothing is waiting, wait up to this long for something to arrive (default 0)",
    )
    receive.add_argument("--json", action="store_true", help="one JSON object per line")
    state_argument(receive)
    receive.set_defaults(handler=run_receive)

    group = subparsers.add_parser("group", help="create groups and change their members")
    verbs = group.add_subparsers(dest="group_verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="create a group (you are its admin)")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--members", required=True, metavar="H1,H2", help="comma-separated handles")
    state_argument(create)
    create.set_defaults(handler=run_group_create)
    for verb, text in (("add", "add a member"), ("remove", "remove a member (they can't read what follows)")):
        change = verbs.add_parser(verb, help=text)
        add_id_argument(change, "group", metavar="GROUP", help="group name or id")
        change.add_argument("handle", metavar="HANDLE")
        state_argument(change)
        change.set_defaults(handler=run_group_change, add=verb == "add")
    listing = verbs.add_parser("list", help="your groups and their members")
    listing.add_argument("--json", action="store_true")
    state_argument(listing)
    listing.set_defaults(handler=run_group_list)


def state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="DIR",
        help="the device's state folder, primary or companion (default: the primary's if set up, "
        f"else the companion's: {default_state_dir(Role.PRIMARY)}, {default_state_dir(Role.COMPANION)})",
    )


def load_device(args: argparse.Namespace) -> DeviceState:
    """The state in ``--state``, whichever role it holds."""
    if args.state:
        directory = Path(args.state)
    else:
        candidates = [default_state_dir(role) for role in Role]
        directory = next((d for d in candidates if (d / STATE_FILE).is_file()), candidates[0])
    unlock(directory)
    try:
        written = json.loads(read_private(directory / STATE_FILE))["role"]
    except (OSError, ValueError, KeyError, TypeError, ClientError) as error:
        raise CommandError(
            f"no device state in {directory}: run `lockstep primary init` or `lockstep companion link`"
        ) from error
    try:
        role = Role(written)
    except ValueError as error:
        raise CommandError(f"{directory} holds an unknown role {written!r}") from error
    with refusals():
        return DeviceState.load(directory, role)


def with_messenger(args: argparse.Namespace, work: Callable[[Messenger], Awaitable[T]]) -> T:
    state = load_device(args)

    async def run() -> T:
        async with Messenger.open(state) as messenger:
            return await work(messenger)

    try:
        return run_client(run())
    except E2EError as error:
        raise CommandError(str(error)) from error


def publish_keys(state: DeviceState) -> None:
    """Publish a new device's end-to-end keys at once, so messages reach it from the start."""

    async def run() -> None:
        async with Messenger.open(state):
            pass

    try:
        run_client(run())
    except (CommandError, E2EError) as error:
        print(f"lockstep: note: messaging keys not published yet ({error})", file=sys.stderr)


def _progress(label: str) -> Callable[[int, int], None]:
    if not sys.stderr.isatty():
        return lambda done, total: None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        print(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {100 * done // max(total, 1):3d}%",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if done >= total:
            print(file=sys.stderr)

    return show


def run_send(args: argparse.Namespace) -> int:
    if not args.text and not args.file and not args.voice:
        raise CommandError("nothing to send: give a TEXT, --file PATH or --voice AUDIO")
    if not args.to and not args.reply_to:
        raise CommandError("say whom to send to: --to HANDLE (or --reply-to ID)")

    async def work(messenger: Messenger) -> str:
        file = args.file or args.voice
        label = f"Uploading {file.name}" if file else ""
        sent = await messenger.send(
            args.to,
            args.text,
            file=file,
            progress=_progress(label),
            reply_to=args.reply_to,
            voice=args.voice is not None,
        )
        to = args.to or _conversation_name(messenger, sent.conversation)
        return f"{sent_to(to, sent)}: {sent.message_id}"

    print(with_messenger(args, work))
    return 0


def _conversation_name(messenger: Messenger, conversation: str) -> str:
    """``#group name`` or ``@handle`` for a conversation id."""
    if conversation.startswith("group:"):
        group_id = conversation.removeprefix("group:")
        return "#" + messenger.store.group_names.get(group_id, group_id)
    parts = conversation.split(":")
    peer = parts[2] if len(parts) == 3 and parts[1] == messenger.account_id else parts[-1]
    return "@" + (messenger.handle_of(peer) or peer)


def run_react(args: argparse.Namespace) -> int:
    if args.remove == bool(args.emoji):
        raise CommandError("give one EMOJI, or --remove to take your reaction back")

    async def work(messenger: Messenger) -> str:
        await messenger.react(args.message, "" if args.remove else args.emoji)
        shown = messenger.actions.find(args.message)
        verb = "Removed your reaction from" if args.remove else f"Reacted {args.emoji} to"
        return f"{verb} {_quoted(shown)}"

    print(with_messenger(args, work))
    return 0


def run_edit(args: argparse.Namespace) -> int:
    async def work(messenger: Messenger) -> str:
        await messenger.edit(args.message, args.text)
        return f"Edited {messenger.actions.find(args.message).message_id}: {args.text}"

    print(with_messenger(args, work))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    async def work(messenger: Messenger) -> str:
        await messenger.delete(args.message)
        return f"Deleted for everyone: {messenger.actions.find(args.message).message_id}"

    print(with_messenger(args, work))
    return 0


def run_search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise CommandError("give some TEXT to search for")
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    state = load_device(args)
    if not e2estate.exists(state.directory):
        raise CommandError(f"no messages on this device yet ({state.directory})")
    with e2estate.locked(state.directory), refusals():  # only this device's own store: no server involved
        store = E2EStore.load_or_create(state.directory)
        hits = store.search(args.query, args.limit)
        store.close()
        handles = {a: str(c.get("handle")) for a, c in store.contacts.items() if c.get("handle")}
    for hit in hits:
        sender = str(hit.record["sender"]["account_id"])
        who = "you" if sender == state.account.account_id else f"@{handles.get(sender, sender)}"
        where = _where(hit.conversation, state.account.account_id, store.group_names, handles)
        if args.json:
            line = {
                "id": hit.message_id,
                "conversation": hit.conversation,
                "in": where,
                "from": {"account_id": sender, "handle": handles.get(sender)},
                "ts": hit.record.get("ts"),
                "text": hit.text,
                "file_name": hit.file_name,
                "edited": hit.outcome.edited,
                "reactions": dict(hit.outcome.reactions),
            }
            print(json.dumps(line, ensure_ascii=False))
        else:
            print(f"[{_when(hit.record.get('ts'))}] {where} {who}: {hit.summary}  ({hit.message_id})")
    if not hits and not args.json:
        print(f"No messages on this device contain {args.query!r}")
    return 0


def _where(conversation: str, me: str, group_names: dict[str, str], handles: dict[str, str]) -> str:
    if conversation.startswith("group:"):
        group_id = conversation.removeprefix("group:")
        return "#" + group_names.get(group_id, group_id)
    parts = conversation.split(":")
    peer = parts[2] if len(parts) == 3 and parts[1] == me else parts[-1]
    return "with you" if peer == me else f"with @{handles.get(peer, peer)}"


def _quoted(shown: Shown | None, width: int = 40) -> str:
    if shown is None:
        return "a message not on this device"
    text = shown.summary
    return '"' + (text if len(text) <= width else text[: width - 1] + "\u2026") + '"'


def _devices(count: int) -> str:
    return f"{count} device{'s' if count != 1 else ''}"


def sent_to(to: str, sent: Sent) -> str:
    """ "Sent to 1 device of @bob and 1 other device of yours": recipients' devices apart from ours."""
    own = sent.own_devices
    who = (
        f"group {to.removeprefix('#')}"
        if sent.conversation.startswith("group:")
        else f"@{to.removeprefix('@')}"
    )
    line = f"Sent to {_devices(sent.devices - own)} of {who}"
    return line + (f" and {own} other device{'s' if own != 1 else ''} of yours" if own else "")


def _when(ms: int | None) -> str:
    if ms is None:
        return "--:--:--"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def describe(messenger: Messenger, message: Received) -> str | None:
    """One line for a person, or None for what is not shown (keys)."""
    who = f"@{message.sender_handle}" if message.sender_handle else message.sender_account
    if message.sender_account == messenger.account_id:
        who = "you (another device)"
        parts = (message.conversation or "").split(":")
        if not message.group_id and len(parts) == 3 and parts[0] == "direct":
            peer = parts[2] if parts[1] == messenger.account_id else parts[1]
            if peer != messenger.account_id:
                who += f" to @{messenger.handle_of(peer) or peer}"
    where = ""
    if message.group_id:
        where = f"#{messenger.store.group_names.get(message.group_id, message.group_id)} "
    stamp = f"[{_when(message.timestamp or message.server_time)}] {where}"
    timeline = messenger.store.timeline()
    quoted = message.body.get("reply_to")
    if quoted is not None and message.kind in (Kind.TEXT, Kind.MEDIA):
        target = timeline.quote(str(quoted), message.conversation or "")
        who += f" (replying to {_quoted(target) if target else UNAVAILABLE_QUOTE.lower()})"
    now = timeline.shown(message.message_id) if message.kind in (Kind.TEXT, Kind.MEDIA) else None
    if now is not None and now.outcome.deleted:
        return f"{stamp}{who}: ({DELETED_TEXT.lower()})"
    if message.kind is Kind.TEXT:
        return f"{stamp}{who}: {message.text}"
    if message.kind is Kind.MEDIA:
        media = message.body.get("media", {})
        saved = f"saved to {message.file}" if message.file else message.error or "not downloaded"
        caption = f" {message.text}" if message.text else ""
        voice = parse_voice(message.body)
        if voice is not None:
            length = f" {_clock(voice.duration_ms)}" if voice.duration_ms is not None else ""
            return f"{stamp}{who}: [voice note{length}, {saved}]{caption}"
        return f"{stamp}{who}: [{media.get('type', 'file')} {media.get('name', '')}, {saved}]{caption}"
    if message.kind is Kind.RECEIPT:
        if message.sender_account == messenger.account_id:
            return None
        ticks = "\u2713\u2713" + (" (read)" if message.body.get("status") == "read" else " (delivered)")
        if "up_to" in message.body:  # a marker (messaging.md §5.3): everything up to a message
            chats = len(message.body["up_to"])
            return (
                f"{stamp}{who}: {ticks} up to the newest message in {chats} chat{'s' if chats != 1 else ''}"
            )
        count = len(message.body.get("message_ids", []))
        return f"{stamp}{who}: {ticks} {count} message{'s' if count != 1 else ''}"
    if message.kind in TARGETED:
        line = _describe_action(timeline, message, who)
        return line and stamp + line
    if message.kind is Kind.TYPING:
        return _describe_typing(messenger, message, stamp, who)
    if message.kind is Kind.GROUP_INFO:
        return f"{stamp}{who} set the group name: {message.body.get('name')}"
    if message.kind is Kind.HISTORY:
        return f"{stamp}history from your primary: {message.body.get('note')}"
    if message.kind is Kind.UNDECRYPTABLE:
        return f"{stamp}{who}: (a message that could not be decrypted: {message.error})"
    return None


def _clock(ms: int) -> str:
    """4200 ms → "0:04", as a voice note's length is shown."""
    seconds = round(ms / 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _describe_typing(messenger: Messenger, message: Received, stamp: str, who: str) -> str | None:
    """ "@alice is typing…" while it is news (§15.5: not once it waited in a queue, nor our own devices').
    Presence is never printed: a terminal shares none, and a device that shares none shows none."""
    if message.sender_account == messenger.account_id:
        return None
    if messenger.session.clock.now_ms() - (message.timestamp or 0) > TYPING_FRESH_MS:
        return None
    typing = parse_signal(message.kind, message.body)
    return f"{stamp}{who} {'is typing…' if typing.state is TypingState.COMPOSING else 'stopped typing'}"


def _describe_action(timeline: Timeline, message: Received, who: str) -> str | None:
    """A reaction, edit or delete that changes what is shown (§15.3), in words; None for one that
    receivers ignore, which is not news."""
    change = parse_change(message.kind, message.body)
    action = Action(
        message.message_id,
        message.conversation or "",
        message.sender_account,
        message.timestamp or 0,
        message.server_time,
        change,
    )
    if timeline.applies(action) is False:
        return None
    target = timeline.shown(change.target)
    if isinstance(change, Reaction):
        if not change.emoji:
            return f"{who} removed a reaction from {_quoted(target)}"
        return f"{who} reacted {change.emoji} to {_quoted(target)}"
    if isinstance(change, Edit):
        return f"{who} edited a message: {change.text}"
    return f"{who} deleted a message"


def run_receive(args: argparse.Namespace) -> int:
    if args.wait < 0:
        raise CommandError("--wait must not be negative")

    async def work(messenger: Messenger) -> None:
        shown = (
            Kind.TEXT,
            Kind.MEDIA,
            Kind.RECEIPT,
            Kind.UNDECRYPTABLE,
            Kind.GROUP_INFO,
            Kind.CALL,
            *TARGETED,
        )
        received = await messenger.receive(
            args.wait, receipts=False, until=lambda r: any(m.kind in shown for m in r), settle=0.5
        )
        for message in received:  # know who our other devices wrote to, for "you to @bob"
            parts = (message.conversation or "").split(":")
            if message.sender_account == messenger.account_id and len(parts) == 3 and parts[0] == "direct":
                for account_id in parts[1:]:
                    if messenger.handle_of(account_id) is None:
                        with contextlib.suppress(ClientError, E2EError):
                            await messenger.contact(account_id=account_id)
        calls = [m for m in received if m.kind is Kind.CALL]
        received = [m for m in received if m.kind is not Kind.CALL]
        # Printed before anything else can fail: receive() has handed these over for good (a message
        # is shown once), so a later error must not cost the user what is already here.
        for message in received:
            if args.json:
                if message.kind not in (Kind.GROUP_KEY, *EPHEMERAL):
                    print(json.dumps(message.to_json(), ensure_ascii=False), flush=True)
            elif (line := describe(messenger, message)) is not None:
                print(line, flush=True)
        if calls or messenger.store.open_calls:  # incoming, missed and other devices' calls, a line each
            from lockstep.cli.calls import describe_calls

            for line, shown_call in describe_calls(messenger, calls, messenger.session.clock.now_ms()):
                stamp = f"[{_when(shown_call['ts'])}] "
                print(json.dumps(shown_call, ensure_ascii=False) if args.json else stamp + line, flush=True)
        await messenger.send_receipts(received, ReceiptStatus.READ)  # printed = read

    with_messenger(args, work)
    return 0


def run_group_create(args: argparse.Namespace) -> int:
    handles = [h.strip().removeprefix("@") for h in args.members.split(",") if h.strip()]
    if not handles:
        raise CommandError("--members needs at least one handle")

    async def work(messenger: Messenger) -> str:
        return await messenger.create_group(args.name, handles)

    group_id = with_messenger(args, work)
    print(f'Group "{args.name}" created ({group_id}) with ' + ", ".join(f"@{h}" for h in handles))
    return 0


def run_group_change(args: argparse.Namespace) -> int:
    async def work(messenger: Messenger) -> str:
        if args.add:
            return await messenger.add_member(args.group, args.handle)
        return await messenger.remove_member(args.group, args.handle)

    group_id = with_messenger(args, work)
    handle = args.handle.removeprefix("@")
    print(f"@{handle} {'added to' if args.add else 'removed from'} {args.group} ({group_id})")
    return 0


def run_group_list(args: argparse.Namespace) -> int:
    async def work(messenger: Messenger) -> list[dict[str, Any]]:
        groups = (await messenger.session.connection.request("groups.list"))["groups"]
        for group in groups:
            group["name"] = messenger.store.group_names.get(group["group_id"])
            for member in group["members"]:
                member["handle"] = messenger.handle_of(member["account_id"])
        return list(groups)

    groups = with_messenger(args, work)
    if args.json:
        print(json.dumps(groups, indent=2))
        return 0
    for group in groups:
        members = ", ".join(
            f"@{m['handle'] or m['account_id']}" + (" (admin)" if m["role"] == "admin" else "")
            for m in group["members"]
        )
        print(f"{group['name'] or '(unnamed)'}  {group['group_id']}  {members}")
    return 0
