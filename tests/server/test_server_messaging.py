"""End-to-end messaging over a live server: Python primaries and companions of two accounts.

Fan-out to every device, offline delivery in order exactly once, groups with removal, media with
tamper checks, receipts, unlinking, and a database that never holds plaintext.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers_linking import link_one
from helpers_messaging import Account, load, make_account, messengers, shown

from group_of_devices import limits
from lockstep.client.errors import ClientError, ConnectionLost, ServerRefused
from lockstep.client.messaging.records import history_record, new_message_id
from lockstep.client.messenger import Messenger, Received
from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.session import DeviceUnlinked
from lockstep.e2e.envelope import Kind, MessageEnvelope, ReceiptStatus, direct_conversation
from lockstep.e2e.errors import DecryptionError
from lockstep.link.encoding import b64u_decode
from lockstep_servers import stored_bytes

pytestmark = pytest.mark.anyio


async def send_cancelled(
    sender: Messenger, text: str, monkeypatch: pytest.MonkeyPatch, *, after_it_left: bool
) -> None:
    """``sender`` sends ``text`` to bob, and the send is cancelled once its ``messages.send`` was saved:
    right before the frame leaves, or right after (while it waits for the answer)."""
    socket = sender.session.connection._socket
    send_frame = socket.send

    async def send_and_cancel(frame: str) -> None:
        sending = '"op": "messages.send"' in frame
        if sending and not after_it_left:
            await cancel_now()
        await send_frame(frame)
        if sending and after_it_left:
            await cancel_now()

    async def cancel_now() -> None:
        current = asyncio.current_task()
        assert current is not None
        current.cancel()
        await asyncio.sleep(0)  # where the cancellation lands

    with monkeypatch.context() as patch:
        patch.setattr(socket, "send", send_and_cancel)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(sender.send("bob", text))


def remember_notes(messenger: Messenger, times: list[int]) -> None:
    """Notes to self ("note 0", "note 1", ...) at these times, kept as a sent message is kept."""
    own = direct_conversation(messenger.account_id, messenger.account_id)
    for number, ts in enumerate(times):
        body = {"text": f"note {number}"}
        note = MessageEnvelope(
            Kind.TEXT, new_message_id(), own, messenger.account_id, messenger.device_id, ts, body
        )
        messenger.store.remember(history_record(note))
    messenger.store.save()


async def history_bundle(companion: Messenger) -> Received:
    """The one history bundle the companion receives next."""
    got = await companion.receive(wait=10, until=lambda r: any(m.kind == "history" for m in r))
    (bundle,) = [m for m in got if m.kind == "history"]
    return bundle


async def test_a_message_from_a_companion_reaches_every_other_device_and_receipts_flow_back(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.companion_dir, alice.primary_dir, bob.primary_dir, bob.companion_dir) as (
        a_laptop,
        a_phone,
        b_phone,
        b_laptop,
    ):
        sent = await a_laptop.send("bob", "hello from the laptop")
        assert sent.devices == 3  # bob's two devices and alice's phone
        for device in (a_phone, b_phone, b_laptop):
            got = [m for m in await device.receive(wait=5, until=shown) if m.kind == "text"]
            assert [m.text for m in got] == ["hello from the laptop"]
            assert got[0].message_id == sent.message_id
            assert got[0].sender_handle == "alice"
        assert a_laptop.status(sent.message_id) == "sent"
        receipts = [
            m
            for m in await a_laptop.receive(wait=5, until=lambda r: any(m.kind == "receipt" for m in r))
            if m.kind == "receipt"
        ]
        assert receipts and a_laptop.status(sent.message_id) == "delivered"
        # Bob answers from his phone: alice's two devices and bob's laptop get it.
        reply = await b_phone.send("@alice", "hi alice")
        for device in (a_laptop, a_phone, b_laptop):
            texts = [m.text for m in await device.receive(wait=5, until=shown) if m.kind == "text"]
            assert texts == ["hi alice"]
        assert reply.devices == 3


async def queued_for_bob(url: str, root: Path, count: int) -> tuple[Account, list[str]]:
    """Alice's phone sends ``count`` texts to bob, whose devices (keys published) are all offline."""
    alice = await make_account(url, root, "alice")
    bob = await make_account(url, root, "bob")
    texts = [f"message {i}" for i in range(count)]
    async with messengers(alice.primary_dir) as (a_phone,):
        for text in texts:
            await a_phone.send("bob", text)
    return bob, texts


async def test_an_offline_device_gets_everything_on_reconnect_in_order_exactly_once(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, texts = await queued_for_bob(live_server.url, tmp_path, 12)
    store, laptop_id = live_server.services.store, load(bob.companion_dir).device_id
    assert len(await store.fetch_messages(laptop_id, 0, 100)) == len(texts)

    # The laptop reads everything but crashes before acknowledging: the server still holds it all.
    async with messengers(bob.companion_dir) as (b_laptop,):
        original = b_laptop.session.connection.request

        async def no_ack(op: str, **fields: object) -> dict[str, object]:
            return {"deleted": 0} if op == "messages.ack" else await original(op, **fields)

        monkeypatch.setattr(b_laptop.session.connection, "request", no_ack)
        first = await b_laptop.receive(receipts=False)
    assert [m.text for m in first] == texts
    assert [m.seq for m in first] == sorted(m.seq for m in first)
    assert len(await store.fetch_messages(laptop_id, 0, 100)) == len(texts)
    monkeypatch.undo()

    # On reconnect nothing is shown twice, and the acknowledgement empties the queue.
    async with messengers(bob.companion_dir) as (b_laptop,):
        assert await b_laptop.receive() == []
    assert await store.fetch_messages(laptop_id, 0, 100) == []
    # The phone, online all along or not, gets the same messages once.
    async with messengers(bob.primary_dir) as (b_phone,):
        assert [m.text for m in await b_phone.receive()] == texts
        assert await b_phone.receive() == []


async def test_a_connection_lost_between_save_and_ack_still_shows_each_message_once(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, texts = await queued_for_bob(live_server.url, tmp_path, 3)
    store, laptop_id = live_server.services.store, load(bob.companion_dir).device_id

    # The laptop decrypts and saves the batch; then its socket drops before the ack can go out.
    async with messengers(bob.companion_dir) as (b_laptop,):
        save = b_laptop.store.save

        def save_then_drop() -> None:
            save()
            if b_laptop.store.last_seq:  # the batch is on disk (and in local history) by now
                b_laptop.session.connection._socket.transport.abort()

        monkeypatch.setattr(b_laptop.store, "save", save_then_drop)
        with pytest.raises(ConnectionLost):
            await b_laptop.receive(receipts=False)
        monkeypatch.undo()
    assert len(await store.fetch_messages(laptop_id, 0, 100)) == len(texts)  # never acknowledged

    # The server offers them again (dropped: already seen); the saved copies are shown, once.
    async with messengers(bob.companion_dir) as (b_laptop,):
        assert [m.text for m in await b_laptop.receive(receipts=False)] == texts
        assert await b_laptop.receive() == []
    assert await store.fetch_messages(laptop_id, 0, 100) == []


async def test_a_send_cancelled_after_its_frame_left_is_kept_and_resent_once(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation (or Ctrl-C) that arrives once ``messages.send`` left, before its answer is handled,
    may follow a send the server took: the request stays kept, the next run sends it again, and the
    recipient gets the message exactly once (messaging.md §11, "Saved before sent")."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        await a.send("bob", "before")
        assert [m.text for m in await b.receive(wait=5, until=shown) if m.kind == "text"] == ["before"]
        await send_cancelled(a, "cancelled after it left", monkeypatch, after_it_left=True)
        assert len(a.store.in_flight) == 1
        monkeypatch.undo()
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):  # the open resends it
        assert a.store.in_flight == {}
        got = await b.receive(wait=5, until=shown)
        assert [m.text for m in got if m.kind == "text"] == ["cancelled after it left"]
        assert [m for m in await b.receive() if m.kind == "text"] == []  # once only
        assert "cancelled after it left" in [r["body"]["text"] for r in a.store.history]


async def test_a_kept_send_refused_for_a_while_is_kept_and_sent_by_a_later_run(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept request the server refuses with rate_limited when the next run sends it again is kept, not
    dropped: the run after the limit passed sends it, and the recipient gets the message once."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        await a.send("bob", "before")
        await b.receive(wait=5, until=shown)
        await send_cancelled(a, "sent once the limit passed", monkeypatch, after_it_left=False)
        phone_id = a.device_id
    sends, clock = live_server.services.limits.sends, live_server.clock
    while await sends.allow(phone_id, clock()):  # the phone used up its sends for this minute
        pass
    async with messengers(alice.primary_dir) as (a,):
        assert len(a.store.in_flight) == 1  # refused with rate_limited: kept
    clock.advance(120_000)
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        assert a.store.in_flight == {}
        got = await b.receive(wait=5, until=shown)
        assert [m.text for m in got if m.kind == "text"] == ["sent once the limit passed"]
        assert [m for m in await b.receive() if m.kind == "text"] == []


async def test_live_delivery_and_a_gap_are_both_handled_in_order(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir, bob.companion_dir) as (a, b, _):
        await b.receive()
        for i in range(5):
            await a.send("bob", f"live {i}")
        got = await b.receive(wait=5, until=lambda r: len([m for m in r if m.kind == "text"]) == 5)
        assert [m.text for m in got if m.kind == "text"] == [f"live {i}" for i in range(5)]


async def test_a_removed_group_member_stops_receiving_and_cannot_decrypt_what_is_sent_after(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    carol = await make_account(live_server.url, tmp_path, "carol")
    dirs = (alice.primary_dir, bob.primary_dir, bob.companion_dir, carol.primary_dir, carol.companion_dir)
    async with messengers(*dirs, alice.companion_dir) as (a, b, b2, c, c2, a2):
        group_id = await a.create_group("Climbing", ["bob", "carol"])
        await a.send("Climbing", "first, to everyone")
        for device in (b, b2, c, c2, a2):
            got = await device.receive(wait=5, until=shown)
            assert [m.text for m in got if m.kind == "text"] == ["first, to everyone"]
            assert device.store.group_names[group_id] == "Climbing"
        # Bob answers in the group from his laptop.
        await b2.send(f"#{group_id}", "bob here")
        for device in (a, b, c, c2, a2):
            got = await device.receive(wait=5, until=shown)
            assert [m.text for m in got if m.kind == "text"] == ["bob here"]

        await a.remove_member("Climbing", "carol")
        await a.send("Climbing", "after carol left")
        await b2.send(group_id, "bob, after carol left")
        for device in (c, c2):
            assert [m for m in await device.receive(wait=1) if m.kind == "text"] == []
        # Even given the ciphertexts the server queued for bob, carol's sessions cannot open them.
        store = live_server.services.store
        queued = await store.fetch_messages(b.device_id, 0, 100)
        megolm = [m for m in queued if m.payload["type"] == "megolm"]
        assert len(megolm) == 2
        for message in megolm:
            for device in (c, c2):
                with pytest.raises(DecryptionError):
                    device.store.groups.decrypt(
                        message.sender_device,
                        message.payload["session_id"],
                        b64u_decode(message.payload["ciphertext"]),
                    )
        texts = [m.text for m in await b.receive(wait=5, until=lambda r: len([m for m in r if m.text]) == 2)]
        assert "after carol left" in texts and "bob, after carol left" in texts
        with pytest.raises(ServerRefused):  # carol is no longer a member
            await c.send(group_id, "can I still post?")


async def test_an_image_round_trips_through_media_upload_and_a_tampered_blob_is_rejected(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    picture = tmp_path / "holiday.png"
    picture.write_bytes(bytes(range(256)) * 4000 + b"end")
    progress: list[tuple[int, int]] = []
    async with messengers(alice.companion_dir, bob.primary_dir, bob.companion_dir) as (a, b, b2):
        sent = await a.send("bob", "look!", file=picture, progress=lambda d, t: progress.append((d, t)))
        assert progress[-1][0] == progress[-1][1] and len(progress) > 2
        for device in (b, b2):
            (message,) = [m for m in await device.receive(wait=5, until=shown) if m.kind == "media"]
            assert message.kind == "media" and message.text == "look!" and message.error is None
            assert message.body["media"]["type"] == "image" and message.body["media"]["name"] == "holiday.png"
            assert message.file is not None and message.file.read_bytes() == picture.read_bytes()
            assert message.message_id == sent.message_id
        # The server holds only the encrypted blob.
        blob = live_server.services.media_root / message.body["media"]["media_id"]
        assert picture.read_bytes()[:4096] not in blob.read_bytes()

        # A blob changed on the server is refused, and nothing half-written is kept.
        before = set(live_server.services.media_root.iterdir())
        await a.send("bob", file=picture)
        (path,) = set(live_server.services.media_root.iterdir()) - before
        data = bytearray(path.read_bytes())
        data[1000] ^= 1
        path.write_bytes(bytes(data))
        (message,) = [m for m in await b.receive(wait=5, until=shown) if m.kind == "media"]
        assert message.file is None
        assert message.error is not None and "media rejected" in message.error
        assert sorted(p.name for p in (bob.primary_dir / "downloads").iterdir()) == ["holiday.png"]

        # Uploads over the configured limit are refused by the server.
        live_server.services.media_max_bytes = 4096
        with pytest.raises(ClientError):
            await a.send("bob", file=picture)


async def test_an_unlinked_device_gets_nothing_after_and_its_queue_and_keys_are_gone(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    laptop_id = load(alice.companion_dir).device_id
    async with messengers(alice.companion_dir, bob.primary_dir) as (a_laptop, b):
        await b.send("alice", "before")
        await b.send("alice", "also before, never read by the laptop")
        phone = await PrimarySession.open(load(alice.primary_dir))
        await phone.unlink(laptop_id)
        await phone.close()
        after = await b.send("alice", "after the unlink")  # the stale device list is refreshed
        assert after.devices == 2  # alice's phone and bob's laptop
        assert await live_server.services.store.fetch_messages(laptop_id, 0, 100) == []
        assert await live_server.services.store.device_bundles([laptop_id]) == {}
        with pytest.raises((DeviceUnlinked, ConnectionLost)):
            await a_laptop.receive(wait=2)
    assert not (alice.companion_dir / "pickle.key").exists()
    async with messengers(alice.primary_dir) as (a_phone,):
        texts = [m.text for m in await a_phone.receive()]
        assert texts == ["before", "also before, never read by the laptop", "after the unlink"]


async def test_read_receipts_and_ticks(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        sent = await a.send("bob", "tick tock")
        assert a.status(sent.message_id) == "sent"
        got = await b.receive(wait=5, until=shown)
        await a.receive(wait=5, until=lambda r: any(m.kind == "receipt" for m in r))
        assert a.status(sent.message_id) == "delivered"
        await b.send_receipts(got, ReceiptStatus.READ)
        await a.receive(wait=5, until=lambda r: any(m.kind == "receipt" for m in r))
        assert a.status(sent.message_id) == "read"


async def test_the_database_holds_no_plaintext_of_any_message(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    secrets_sent = [
        "a direct secret 7d1f",
        "a group secret 93ab",
        "a caption secret 55e0",
        "Secret Group Name",
    ]
    attachment = tmp_path / "notes.txt"
    attachment.write_text("file contents secret 0c4d " * 50)
    async with messengers(alice.primary_dir, alice.companion_dir, bob.primary_dir) as (a, a2, b):
        await a.send("bob", secrets_sent[0])
        await a.create_group(secrets_sent[3], ["bob"])
        await a2.receive(wait=5, until=shown)
        await a.send(secrets_sent[3], secrets_sent[1])
        await a.send("bob", secrets_sent[2], file=attachment)
        # Leave some of it queued (bob's laptop never reads), some acknowledged.
        await b.receive(wait=5, until=lambda r: len([m for m in r if m.kind in ("text", "media")]) == 3)
    data = await stored_bytes(live_server.database_url)
    assert b"bob" in data  # the search is real: routing metadata is stored in the clear
    if live_server.engine == "sqlite":
        assert Path(live_server.database_url[len("sqlite:///") :] + "-wal").exists()
    data += b"".join(path.read_bytes() for path in live_server.services.media_root.iterdir())
    for secret in [*secrets_sent, "file contents secret 0c4d"]:
        for encoding in ("utf-8", "utf-16-le"):
            assert secret.encode(encoding) not in data, secret


async def test_a_new_companion_gets_recent_history_from_the_primary_and_more_on_request(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        await a.send("bob", "old news")
        await b.receive(wait=5, until=shown)
        await b.send("alice", "an answer")
        await a.receive(wait=5, until=shown)
        # An old entry in the phone's own history: older than 30 days, it is not transferred.
        a.store.remember({**a.store.history[0], "id": "ancient-message-id-0", "ts": 1})
        a.store.save()
        phone = await PrimarySession.open(load(alice.primary_dir))
        tablet = await link_one(live_server.url, phone, tmp_path / "alice-tablet", "Tablet")
        await tablet.close()
        await phone.close()
        async with messengers(tmp_path / "alice-tablet") as (t,):
            assert t.store.history == []
            await a.receive()  # the phone notices the new companion and sends it the bundle
            assert t.device_id in a.store.history_sent_to
            got = await t.receive(wait=5, until=lambda r: any(m.kind == "history" for m in r))
            (history,) = [m for m in got if m.kind == "history"]
            assert history.body["count"] == 2
            assert "2 messages from the last 30 days" in history.body["note"]
            assert "1 older messages stay only on the phone" in history.body["note"]
            assert [r["body"]["text"] for r in t.store.history] == ["old news", "an answer"]
            await a.receive()
            assert [m for m in await t.receive() if m.kind == "history"] == []  # once only

            # The tablet asks the phone for what it kept back (§12.1): the older message comes over too.
            await t.request_older_history(limit=50)
            await a.receive()  # the phone serves the request
            got = await t.receive(wait=5, until=lambda r: any(m.kind == "history" for m in r))
            (older,) = [m for m in got if m.kind == "history"]
            assert older.body["count"] == 1 and older.body["note"] == "1 older messages were transferred"
            assert "ancient-message-id-0" in {r["id"] for r in t.store.history}


async def test_a_python_primary_serves_older_history_from_every_message_it_keeps(
    live_server, tmp_path: Path
) -> None:
    """Past the 1,000 messages it holds in memory (and all the file-based store kept): the first bundle
    keeps to the 1,000 default, and a request for more gets the other 1,500 (messaging.md §12.1)."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    async with messengers(alice.primary_dir, alice.companion_dir) as (phone, laptop):
        now = phone.session.clock.now_ms()
        remember_notes(phone, [now - 2_500 + number for number in range(2_500)])
        await phone.receive()  # the phone sends the laptop its first bundle
        first = await history_bundle(laptop)
        assert (
            first.body["count"] == 1_000
            and "1500 older messages stay only on the phone" in first.body["note"]
        )

        await laptop.request_older_history(limit=10_000)
        await phone.receive()  # the phone serves the request
        older = await history_bundle(laptop)
        assert older.body["count"] == 1_500 and older.body["note"] == "1500 older messages were transferred"
        assert laptop.store.message_count() == 2_500
        texts = [r["body"]["text"] for r in laptop.store.newest_messages(2_500)[0]]
        assert texts == [f"note {n}" for n in range(2_500)]


async def test_fewer_messages_than_the_limit_all_go_over_in_the_bundle_and_on_request(
    live_server, tmp_path: Path
) -> None:
    """More than half the limit but fewer than it: every one of them goes over, both in the first
    bundle (600 recent, limit 1,000) and when the companion asks for older ones (700, limit 1,000)."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    async with messengers(alice.primary_dir, alice.companion_dir) as (phone, laptop):
        now = phone.session.clock.now_ms()
        ancient = now - 40 * 86_400_000
        # 700 notes older than 30 days, then 600 recent ones
        remember_notes(phone, [ancient + n for n in range(700)] + [now - 600 + n for n in range(600)])
        await phone.receive()  # the phone sends the laptop its first bundle
        first = await history_bundle(laptop)
        assert first.body["count"] == 600
        assert first.body["not_transferred"] == {"older_than_30_days_or_dropped": 700, "over_1000_limit": 0}
        assert "600 messages from the last 30 days" in first.body["note"]

        await laptop.request_older_history(limit=1_000)
        await phone.receive()  # the phone serves the request
        older = await history_bundle(laptop)
        assert older.body["count"] == 700 and older.body["note"] == "700 older messages were transferred"
        texts = [r["body"]["text"] for r in laptop.store.newest_messages(2_000)[0]]
        assert texts == [f"note {n}" for n in range(1_300)]


async def test_pushed_messages_with_a_gap_are_completed_from_the_queue_in_order(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        await b.receive()
        for i in range(4):
            await a.send("bob", f"m{i}")
        events: list[dict[str, object]] = []
        while len([e for e in events if e.get("event") == "message"]) < 4:
            events.append(await b.session.connection.next_event(timeout=5))
        pushed = [e for e in events if e.get("event") == "message"]
        await b.handle_events([pushed[0], pushed[2], pushed[2], pushed[3]])  # #2 lost, #3 twice
        assert [m.text for m in b.take_unreported()] == ["m0", "m1", "m2", "m3"]
        await b.handle_events([pushed[1]])  # the late copy is ignored
        assert b.take_unreported() == []


async def test_an_unlinked_device_in_a_group_cannot_read_what_is_sent_after(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    laptop_id = load(alice.companion_dir).device_id
    async with messengers(alice.primary_dir, alice.companion_dir, bob.primary_dir) as (a, a2, b):
        group_id = await a.create_group("Family", ["bob"])
        await b.receive(wait=5, until=lambda r: any(m.kind == "group-info" for m in r))
        await b.send("Family", "before the unlink")
        before = b.store.groups.session_id(group_id)
        got = await a2.receive(wait=5, until=shown)
        assert "before the unlink" in [m.text for m in got]
        kept = a2.store.groups  # what the laptop holds, as a thief of the laptop would

        phone = await PrimarySession.open(load(alice.primary_dir))
        await phone.unlink(laptop_id)
        await phone.close()
        sent = await b.send("Family", "after the unlink")
        assert b.store.groups.session_id(group_id) != before  # bob re-keyed without the laptop
        queued = await live_server.services.store.fetch_messages(a.device_id, 0, 100)
        (after,) = [m for m in queued if m.message_id == sent.message_id]
        with pytest.raises(DecryptionError):
            kept.decrypt(
                after.sender_device, after.payload["session_id"], b64u_decode(after.payload["ciphertext"])
            )
        texts = [m.text for m in await a.receive(wait=5, until=shown)]
        assert "after the unlink" in texts


async def test_a_message_id_names_one_message_for_good(live_server, tmp_path: Path) -> None:
    """Issue 14 B.14 (Python twin): a peer that reuses the id of a message Alice's laptop sent cannot
    add its own words under it, on the sender nor on a device that no longer remembers the id as seen
    (``history`` is what a new companion gets); its next message with a fresh id arrives normally."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.companion_dir, alice.primary_dir, bob.primary_dir) as (
        a_laptop,
        a_phone,
        b_phone,
    ):
        sent = await a_laptop.send("bob", "I will pay you on Friday")
        for device in (a_phone, b_phone):
            assert [m.text for m in await device.receive(wait=5, until=shown) if m.kind == "text"]
        a_phone.store.seen._ids.pop(sent.message_id)  # as after 5,000 later messages (SeenMessages' bound)
        await b_phone.send_direct(
            "alice", Kind.TEXT, {"text": "I will never pay"}, message_id=sent.message_id
        )
        await b_phone.send("alice", "see you")

        def marker(received: list[Received]) -> bool:
            return any(m.text == "see you" for m in received)

        for device in (a_laptop, a_phone):
            received = await device.receive(wait=5, until=marker)
            assert "I will never pay" not in [m.text for m in received]
            records = [r for r in device.store.history if r["id"] == sent.message_id]
            assert [r["body"]["text"] for r in records] == ["I will pay you on Friday"]


async def test_a_text_too_large_for_one_request_is_refused_before_any_one_time_key_is_claimed(
    live_server, tmp_path: Path
) -> None:
    """The browser used to claim a key per device and only then find the request too large; now the
    size is known before encrypting, so a refused text spends nothing (messaging.md §6.3)."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    store = live_server.services.store
    bob_devices = [load(bob.primary_dir).device_id, load(bob.companion_dir).device_id]
    async with messengers(alice.primary_dir) as (a_phone,):
        before = [await store.one_time_keys_left(d) for d in bob_devices]
        with pytest.raises(ClientError, match="too large"):
            await a_phone.send("bob", "x" * 20_000)
        assert [await store.one_time_keys_left(d) for d in bob_devices] == before
        assert not a_phone.store.olm.has_session(
            (await a_phone.contact(handle="bob")).keys[bob_devices[0]].identity_key
        )
        await a_phone.send("bob", "a short one instead")
        assert [await store.one_time_keys_left(d) for d in bob_devices] == [
            n - 1 for n in before if n is not None
        ]


async def test_a_group_of_many_handles_is_looked_up_in_batches_within_the_rate_limit(
    live_server, tmp_path: Path
) -> None:
    """`lockstep group create` with 1,000 handles used to look each one up alone and met the
    600-a-minute look-up limit; handles now go 128 to a request (messaging.md §7.1). Here the limit is
    lowered to 4 look-ups and claims a minute, and 8 members still make a group everyone reads."""
    handles = [f"member{i}" for i in range(8)]
    for handle in handles:
        await create_account(live_server.url, handle, handle.title(), "Phone", tmp_path / handle)
    live_server.services.limits = limits(key_claims=4)
    async with messengers(*(tmp_path / h for h in handles)) as devices:
        creator, *members = devices
        group_id = await creator.create_group("Everyone", handles[1:])
        await creator.send("Everyone", "hello, all of you")
        for member in members:
            got = await member.receive(wait=5, until=shown)
            assert [m.text for m in got if m.kind == "text"] == ["hello, all of you"]
            assert member.store.group_names[group_id] == "Everyone"
        with pytest.raises(ClientError, match="no account @nobody"):
            await creator.create_group("Strangers", ["member1", "nobody"])
