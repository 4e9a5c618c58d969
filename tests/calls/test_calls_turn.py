"""coturn's shared-secret TURN credentials (``use-auth-secret``); coturn itself checks them in
tests/calls/test_calls_coturn.py."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.calls.turn import check_turn_url, credential, stun_url


@given(st.binary(min_size=1, max_size=64), st.text(min_size=1, max_size=40), st.integers(0, 2**40))
def test_the_password_is_base64_hmac_sha1_of_the_username_as_coturn_computes_it(
    secret: bytes, user: str, now: int
) -> None:
    made = credential(secret, ("turn:127.0.0.1:3478",), user, now)
    assert made.username == f"{now + 3600}:{user}"
    expected = base64.b64encode(hmac.new(secret, made.username.encode(), hashlib.sha1).digest()).decode()
    assert made.credential == expected
    assert made.expires_at == now + 3600


def test_turn_urls() -> None:
    assert check_turn_url("turn:127.0.0.1:3478?transport=udp")
    assert stun_url("turn:turn.example.org:3478?transport=tcp") == "stun:turn.example.org:3478"
    assert stun_url("turn:[::1]:3478") == "stun:[::1]:3478"
    for bad in ("http://x", "turn:", "turn:host:port", "stun:1.2.3.4"):
        with pytest.raises(ValueError, match="not a TURN URL"):
            check_turn_url(bad)
