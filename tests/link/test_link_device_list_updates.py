"""§4.3: a device takes a newer valid list, keeps its own on the same version, refuses an older one.

The vectors (vectors/device-list-updates.json) are shared with the browser (tests/web/
test_web_device_list_updates.py); the property test drives a companion's real state
(DeviceSession.accept_device_list) with lists of every version relation, signed by the account key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.client.errors import StateError
from lockstep.client.session import DeviceSession, DeviceUnlinked
from lockstep.client.state import DeviceState
from lockstep.link.devices import DeviceEntry, DeviceList, ListUpdate, Role, list_update
from lockstep.link.encoding import key_id
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "device-list-updates.json").read_text())
ACCOUNT_KEY = bytes.fromhex(VECTORS["account_key"])


def companion_session(directory: Path, held: Envelope) -> DeviceSession:
    """A companion's session as after linking, holding ``held``; no socket is needed to accept lists."""
    account = AccountInfo(key_id(ACCOUNT_KEY), "alice", "Alice", ACCOUNT_KEY)
    state = DeviceState(
        directory, "companion", "http://127.0.0.1:1", "http://127.0.0.1:1", account,
        VECTORS["device_id"], "Laptop", held,
    )  # fmt: skip
    state.save()
    return DeviceSession(state, connection=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vectors(case: dict[str, Any], tmp_path: Path) -> None:
    offered = Envelope.from_json(case["offered"])
    held = Envelope.from_json(VECTORS["held"])
    assert list_update(VECTORS["held_version"], DeviceList.verify(offered, ACCOUNT_KEY)) == case["update"]
    session = companion_session(tmp_path, held)
    if case["unlinked"]:
        with pytest.raises(DeviceUnlinked):
            session.accept_device_list(offered)
        return
    if case["update"] == "stale":
        with pytest.raises(StateError, match="older"):
            session.accept_device_list(offered)
    else:
        session.accept_device_list(offered)
    expected = offered if case["update"] == "take" else held
    assert session.state.device_list == expected
    assert DeviceState.load(tmp_path, "companion").device_list == expected


ACCOUNT = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PRIMARY = DeviceEntry.new(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.PRIMARY, "P", 1)
ME = DeviceEntry.new(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.COMPANION, "Me", 1)
OTHERS = [
    DeviceEntry.new(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.COMPANION, f"C{i}", 1)
    for i in range(3)
]


@st.composite
def device_lists(draw: st.DrawFn, version: int) -> Envelope:
    with_me = draw(st.booleans())
    me = ME if draw(st.booleans()) else DeviceEntry(ME.device_id, ME.device_key, ME.role, "Renamed", 1)
    others = draw(st.lists(st.sampled_from(OTHERS), max_size=3, unique=True))
    devices = (PRIMARY, *([me] if with_me else []), *others)
    account_key = ACCOUNT.public_key().public_bytes_raw()
    return DeviceList(key_id(account_key), version, draw(st.integers(0, 10**13)), devices).sign(ACCOUNT)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), held_version=st.integers(1, 5), delta=st.integers(-3, 3))
def test_only_a_newer_list_changes_what_a_companion_holds(
    data: st.DataObject, held_version: int, delta: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    account_key = ACCOUNT.public_key().public_bytes_raw()
    held = DeviceList(key_id(account_key), held_version, 0, (PRIMARY, ME)).sign(ACCOUNT)
    offered = data.draw(device_lists(max(1, held_version + delta)))
    version = DeviceList.verify(offered, account_key).version
    directory = tmp_path_factory.mktemp("companion")
    account = AccountInfo(key_id(account_key), "alice", "Alice", account_key)
    state = DeviceState(directory, "companion", "x", "x", account, ME.device_id, "Me", held)
    session = DeviceSession(state, connection=None)  # type: ignore[arg-type]
    try:
        session.accept_device_list(offered)
        outcome = "accepted"
    except DeviceUnlinked:
        outcome = "unlinked"
    except StateError:
        outcome = "refused"
    update = list_update(held_version, DeviceList.verify(offered, account_key))
    if version > held_version:
        assert update is ListUpdate.TAKE
        mine = DeviceList.verify(offered, account_key).find(ME.device_id)
        assert outcome == ("accepted" if mine else "unlinked")
        if mine:
            assert session.state.device_list == offered
    else:
        # Same version (identical or not) or older: what the companion holds does not change, and a
        # list without it never unlinks it.
        assert outcome == ("accepted" if version == held_version else "refused")
        assert session.state.device_list == held
