"""Fitting an Olm fan-out into requests (messaging.md §6.3), before anything is encrypted.

A group key share is one Olm ciphertext per device; for a large group it needs several
``messages.send`` requests, each under the frame limit. The split is planned from an upper bound on
each payload's size, computed from the plaintext's length alone, so that one-time keys are claimed
per request only once the request is known to fit, and never for a request the client would refuse.

Olm messages (vodozemac, libolm's format): a normal message is a version byte, the ratchet key (34
bytes with its tag and length), the chain index (up to 6), the ciphertext with its tag and length (up
to 4 more) and an 8-byte MAC; a pre-key message adds the version byte and three 34-byte keys around
it, and a length of up to 3. The ciphertext is AES-256-CBC with PKCS#7: the plaintext rounded up to
the next whole 16-byte block. :data:`OLM_OVERHEAD_BOUND` covers all of that with room to spare.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lockstep.e2e.errors import LocalE2EError

OLM_OVERHEAD_BOUND = 192
"""Bytes an Olm message adds to its padded ciphertext, pre-key messages included (≈ 53 or 159)."""
SENDER_KEY_CHARS = 43
"""A Curve25519 key in unpadded base64url."""
_EMPTY_PAYLOAD = len(
    json.dumps({"device_id": "", "type": "olm", "olm_type": 0, "sender_key": "", "ciphertext": ""})
)


class FanoutTooLarge(LocalE2EError):
    """One device's copy alone does not fit a request: the plaintext is too long to send this way."""


def olm_size_bound(plaintext_size: int) -> int:
    """The most bytes an Olm message of ``plaintext_size`` bytes takes, pre-key or normal."""
    return 16 * (plaintext_size // 16 + 1) + OLM_OVERHEAD_BOUND


def payload_size_bound(device_id: str, plaintext_size: int) -> int:
    """The most characters one Olm payload object takes in a request's JSON, its list separator
    included (``json.dumps`` with its default separators, as clients send)."""
    ciphertext_chars = -(-4 * olm_size_bound(plaintext_size) // 3)
    return _EMPTY_PAYLOAD + len(json.dumps(device_id)) - 2 + SENDER_KEY_CHARS + ciphertext_chars + 2


def plan_requests(
    device_ids: Sequence[str], plaintext_size: int, budget: int, max_payloads: int
) -> list[list[str]]:
    """Split ``device_ids`` (in order) into as few consecutive requests as fit: each request's payloads
    take at most ``budget`` characters and number at most ``max_payloads``."""
    requests: list[list[str]] = []
    current: list[str] = []
    used = 0
    for device_id in device_ids:
        size = payload_size_bound(device_id, plaintext_size)
        if size > budget:
            raise FanoutTooLarge("one copy of this message is larger than a request may be")
        if current and (used + size > budget or len(current) == max_payloads):
            requests.append(current)
            current, used = [], 0
        current.append(device_id)
        used += size
    if current:
        requests.append(current)
    return requests
