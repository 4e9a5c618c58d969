"""Planning an Olm fan-out into requests (e2e/fanout.py, messaging.md §6.3): the size bound holds for
real vodozemac messages of both types, and a plan never exceeds its budget nor loses or repeats a
device."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e.fanout import FanoutTooLarge, olm_size_bound, payload_size_bound, plan_requests
from lockstep.e2e.olm import OlmCiphertext, OlmDevice, OlmType
from lockstep.link.encoding import b64u_encode

ALICE, BOB = OlmDevice.create(), OlmDevice.create()
(_KEY,) = BOB.new_one_time_keys(1)
_FIRST = ALICE.encrypt(BOB.identity_key, b"hello", _KEY.key)
BOB.decrypt(ALICE.identity_key, _FIRST)  # now Bob's replies are normal messages, Alice's pre-key ones


def payload(device_id: str, ciphertext: OlmCiphertext) -> str:
    """One payload as the Python client puts it in ``messages.send``, with its list separator."""
    return (
        json.dumps(
            {
                "device_id": device_id,
                "type": "olm",
                "olm_type": int(ciphertext.type),
                "sender_key": b64u_encode(ALICE.identity_key),
                "ciphertext": b64u_encode(ciphertext.body),
            }
        )
        + ", "
    )


@given(plaintext=st.binary(max_size=4000), device_id=st.text(min_size=1, max_size=64))
def test_the_bound_holds_for_real_messages_of_both_types(plaintext: bytes, device_id: str) -> None:
    pre_key = ALICE.encrypt(BOB.identity_key, plaintext)
    normal = BOB.encrypt(ALICE.identity_key, plaintext)
    assert (pre_key.type, normal.type) == (OlmType.PRE_KEY, OlmType.NORMAL)
    for ciphertext in (pre_key, normal):
        assert len(ciphertext.body) <= olm_size_bound(len(plaintext))
        assert len(payload(device_id, ciphertext)) <= payload_size_bound(device_id, len(plaintext))


@given(
    devices=st.lists(st.text(min_size=1, max_size=43), unique=True, max_size=300),
    size=st.integers(0, 3000),
    budget=st.integers(5000, 60_000),
    most=st.integers(1, 1024),
)
def test_a_plan_keeps_every_device_once_and_each_request_within_its_budget(
    devices: list[str], size: int, budget: int, most: int
) -> None:
    requests = plan_requests(devices, size, budget, most)
    assert [d for request in requests for d in request] == devices
    for request in requests:
        assert 1 <= len(request) <= most
        assert sum(payload_size_bound(d, size) for d in request) <= budget
    # As few requests as fit: no two neighbours could have been one.
    for first, second in itertools.pairwise(requests):
        joined = first + second[:1]
        assert len(joined) > most or sum(payload_size_bound(d, size) for d in joined) > budget


def test_a_key_share_to_2048_devices_takes_about_45_requests_and_an_oversized_copy_none() -> None:
    device_ids = [b64u_encode(i.to_bytes(16, "big")) for i in range(2047)]
    requests = plan_requests(device_ids, 620, 59_900, 1024)  # a group-key envelope is about 620 bytes
    assert 40 <= len(requests) <= 50
    with pytest.raises(FanoutTooLarge):
        plan_requests(device_ids, 60_000, 59_900, 1024)
