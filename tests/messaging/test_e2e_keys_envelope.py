"""Key bundles are accepted only from devices in the signed list; envelopes reject anything malformed."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e.envelope import Kind, MessageEnvelope, direct_conversation
from lockstep.e2e.errors import EnvelopeError, KeyBundleError
from lockstep.e2e.keys import DeviceKeys, OneTimeKey
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
