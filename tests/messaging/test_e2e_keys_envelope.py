"""Key bundles are accepted only from devices in the signed list; envelopes reject anything malformed."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e.envelope import Kind, MessageEnvelope, direct_conversation
from lockstep.e2e.errors import EnvelopeError, KeyBundleError
from lockstep.e2e.keys import UNLINK_GRACE_MS, DeviceKeys, FormerDevice, OneTimeKey
from lockstep.e2e.olm import OlmDevice
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.envelope import Context, Envelope


def account_with_device() -> tuple[Ed25519PrivateKey, Ed25519PrivateKey, DeviceList]:
    account, device = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    entry = DeviceEntry.new(device.public_key().public_bytes_raw(), Role.PRIMARY, "Phone", 1)
    devices = DeviceList(key_id(account.public_key().public_bytes_raw()), 1, 1, (entry,))
    return account, device, devices


def test_a_bundle_verifies_only_under_a_listed_device_key() -> None:
    _, device, devices = account_with_device()
    olm = OlmDevice.create()
    device_id = devices.primary.device_id
    keys = olm.device_keys(devices.account_id, device_id, 5)
    assert DeviceKeys.verify(keys.seal(device), devices, device_id) == keys
    with pytest.raises(KeyBundleError):  # signed by a key the account never listed (a server's own)
        DeviceKeys.verify(keys.seal(Ed25519PrivateKey.generate()), devices, device_id)
    with pytest.raises(KeyBundleError):  # a device missing from the list
        DeviceKeys.verify(keys.seal(device), devices, "not-a-listed-device")
    other = Envelope.seal(device, Context.DEVICE_LIST, keys.to_payload())
    with pytest.raises(KeyBundleError):  # right key, wrong context
        DeviceKeys.verify(other, devices, device_id)


def test_one_time_keys_are_signed_by_the_bundles_signing_key() -> None:
    olm, stranger = OlmDevice.create(), OlmDevice.create()
    (key,) = olm.new_one_time_keys(1)
    key.verify(olm.signing_key)
    with pytest.raises(KeyBundleError):
        key.verify(stranger.signing_key)
    forged = OneTimeKey(key.key_id, stranger.identity_key, key.signature)
    with pytest.raises(KeyBundleError):
        forged.verify(olm.signing_key)
    assert OneTimeKey.from_json(key.to_json()) == key
    fallback = olm.new_fallback_key()
    assert fallback.fallback
    fallback.verify(olm.signing_key)


def test_envelopes_round_trip_and_check_their_routing() -> None:
    envelope = MessageEnvelope(
        Kind.TEXT, "m" * 22, direct_conversation("b", "a"), "a", "dev", 7, {"text": "hi"}
    )
    assert envelope.conversation == "direct:a:b"
    assert MessageEnvelope.decode(envelope.encode()) == envelope
    envelope.check_routing("m" * 22, "a", "dev")
    with pytest.raises(EnvelopeError):
        envelope.check_routing("m" * 22, "a", "another-device")
    with pytest.raises(EnvelopeError):
        MessageEnvelope.decode(
            MessageEnvelope(Kind.RECEIPT, "m" * 22, "direct:a:b", "a", "d", 1, {"status": "seen"}).encode()
        )


def test_undecryptable_is_a_kind_no_sender_can_send() -> None:
    """Only a receiver marks a copy undecryptable: a sender claiming it gets an envelope refused, not
    a message shown as "could not be decrypted" with a body of the sender's choosing."""
    forged = MessageEnvelope(Kind.UNDECRYPTABLE, "m" * 22, "direct:a:b", "a", "d", 1, {"text": "hi"})
    with pytest.raises(EnvelopeError, match="unknown message kind"):
        MessageEnvelope.decode(forged.encode())


@given(st.binary(max_size=300))
def test_decoding_random_bytes_raises_only_envelope_error(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        MessageEnvelope.decode(data)


@given(
    st.dictionaries(
        st.sampled_from(["v", "kind", "id", "conversation", "sender", "ts", "body"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=30),
            st.lists(st.integers()),
            st.dictionaries(st.text(max_size=10), st.text(max_size=10)),
        ),
    )
)
def test_decoding_wrong_shapes_raises_only_envelope_error(value: dict[str, object]) -> None:
    import json

    with contextlib.suppress(EnvelopeError):
        MessageEnvelope.decode(json.dumps(value).encode())


def test_a_former_device_is_proven_by_the_list_that_had_it_and_the_next() -> None:
    """messaging.md §3.1: what a receiver accepts for a device unlinked since it sent."""
    account, _primary_key, first = account_with_device()
    laptop = Ed25519PrivateKey.generate()
    entry = DeviceEntry.new(laptop.public_key().public_bytes_raw(), Role.COMPANION, "Laptop", 2)
    listed = first.with_companion(entry, 2)  # version 2 has the laptop
    removed = listed.without(entry.device_id, 1_000)  # version 3 unlinks it
    later = removed.successor(removed.devices, 2_000)  # version 4, a rename say
    keys = OlmDevice.create().device_keys(listed.account_id, entry.device_id, 3)
    account_public = account.public_key().public_bytes_raw()

    def record(
        before: DeviceList = listed, after: DeviceList = removed, signer: Any = laptop
    ) -> dict[str, Any]:
        return {
            "device_id": entry.device_id,
            "bundle": keys.seal(signer).to_json(),
            "listed_in": before.sign(account).to_json(),
            "removed_by": after.sign(account).to_json(),
        }

    former = FormerDevice.verify(record(), account_public, entry.device_id, later.version)
    assert former.keys == keys and former.removed_at == 1_000
    # Sent (and queued) before the unlink, or within the grace for a list signed then sent: readable.
    assert former.sent_while_listed(1_000 + UNLINK_GRACE_MS, 999)
    assert not former.sent_while_listed(1_001 + UNLINK_GRACE_MS, 999)  # queued after
    assert not former.sent_while_listed(999, 1_001 + UNLINK_GRACE_MS)  # written after
    for bad, why in (
        (record(after=later), "do not show it being unlinked"),  # not the next version
        (record(after=listed.successor(listed.devices, 1_000)), "do not show it being unlinked"),  # kept
        (record(before=removed, after=later), "never a companion"),
        (record(signer=Ed25519PrivateKey.generate()), "does not verify"),  # a bundle the server made
        ({**record(), "device_id": "another"}, "no record"),
        (None, "no record"),
    ):
        with pytest.raises(KeyBundleError, match=why):
            FormerDevice.verify(bad, account_public, entry.device_id, later.version)
    with pytest.raises(KeyBundleError, match="newer than"):  # an unlink the receiver has not seen signed
        FormerDevice.verify(record(), account_public, entry.device_id, listed.version)
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(KeyBundleError, match="does not verify"):  # lists signed by another account
        FormerDevice.verify(record(), stranger, entry.device_id, later.version)
