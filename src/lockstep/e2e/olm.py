"""Pairwise Olm sessions of one device, and the rules for choosing among them (messaging.md §4).

Session choice, per peer device (named by its Curve25519 identity key):

- **Sending**: use the peer's *preferred* session, the one that most recently decrypted a message from
  the peer or was most recently created; with none, create an outbound session from a claimed one-time
  key (raises :class:`LocalE2EError` without one).
- **A pre-key message**: if one of the peer's sessions matches it (same session id), decrypt with that
  one; otherwise create an inbound session from it (consuming our one-time key) and prefer it. So when
  both sides start a session at once, each ends up preferring the latest one that worked.
- **A normal message**: try the peer's sessions, preferred first; the one that works becomes preferred.
- **Out of order**: Olm's ratchet keeps skipped message keys, so late messages in a chain still decrypt.
- **Duplicates**: a message key is used once, so a replay fails to decrypt; callers drop duplicates by
  message id *before* decrypting (see :class:`lockstep.e2e.dedup.SeenMessages`).

At most :data:`MAX_SESSIONS_PER_PEER` sessions are kept per peer, least recently used dropped first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import vodozemac

from lockstep.e2e.errors import DecryptionError, E2EError, LocalE2EError, NoSession
from lockstep.e2e.keys import DeviceKeys, OneTimeKey, one_time_key_message
from lockstep.link.encoding import b64u_decode, b64u_encode

MAX_SESSIONS_PER_PEER = 5
PICKLE_KEY_SIZE = 32


class OlmType(enum.IntEnum):
    """The Olm message type, as on the wire (0 pre-key, 1 normal)."""

    PRE_KEY = 0
    NORMAL = 1


@dataclass(frozen=True, slots=True)
class OlmCiphertext:
    type: OlmType
    body: bytes


@dataclass(slots=True)
class Changed:
    """The parts of an :class:`OlmDevice` changed since a store last took them
    (:meth:`OlmDevice.take_changed`)."""

    account: bool = False
    peers: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Entry:
    session: vodozemac.Session
    last_used: int


def _curve(key: bytes) -> vodozemac.Curve25519PublicKey:
    try:
        return vodozemac.Curve25519PublicKey.from_bytes(key)
    except vodozemac.KeyException as error:
        raise DecryptionError("not a Curve25519 key") from error


def _b64_std_to_bytes(text: str) -> bytes:
    """vodozemac prints keys and signatures in unpadded standard base64."""
    return b64u_decode(text.replace("+", "-").replace("/", "_"))


class OlmDevice:
    """One device's Olm account and its sessions with peer devices. No I/O: pickle it to persist."""

    def __init__(self, account: vodozemac.Account) -> None:
        self.account = account
        self._sessions: dict[str, list[_Entry]] = {}
        self._counter = 0
        self.changed = Changed()
        """What moved since the store last wrote it: a store writes only those (client/e2estate.py)."""

    @classmethod
    def create(cls) -> OlmDevice:
        return cls(vodozemac.Account())

    # --- identity and published keys -------------------------------------------------------------
    @property
    def identity_key(self) -> bytes:
        return self.account.curve25519_key.to_bytes()

    @property
    def signing_key(self) -> bytes:
        return _b64_std_to_bytes(self.account.ed25519_key.to_base64())

    def device_keys(self, account_id: str, device_id: str, issued_at: int) -> DeviceKeys:
        return DeviceKeys(account_id, device_id, self.identity_key, self.signing_key, issued_at)

    def _sign_key(self, key_id: str, key: vodozemac.Curve25519PublicKey, fallback: bool) -> OneTimeKey:
        raw = key.to_bytes()
        signature = _b64_std_to_bytes(self.account.sign(one_time_key_message(key_id, raw)).to_base64())
        return OneTimeKey(key_id, raw, signature, fallback)

    def new_one_time_keys(self, count: int) -> list[OneTimeKey]:
        """Generate ``count`` keys, sign them and mark them published (the caller uploads them)."""
        count = max(0, min(count, self.account.max_number_of_one_time_keys))
        self.account.generate_one_time_keys(count)
        keys = [self._sign_key(key_id, key, False) for key_id, key in self.account.one_time_keys.items()]
        self.account.mark_keys_as_published()
        self.changed.account = True
        return keys

    def new_fallback_key(self) -> OneTimeKey:
        # Not in vodozemac's type stubs, present in the binding (0.10).
        account: Any = self.account
        account.generate_fallback_key()
        fallback: dict[str, vodozemac.Curve25519PublicKey] = account.fallback_key
        ((key_id, key),) = fallback.items()
        signed = self._sign_key(key_id, key, True)
        self.account.mark_keys_as_published()
        self.changed.account = True
        return signed

    # --- session choice --------------------------------------------------------------------------
    def _touch(self, peer: str, entry: _Entry) -> None:
        self._counter += 1
        entry.last_used = self._counter
        self.changed.peers.add(peer)
        entries = self._sessions.setdefault(peer, [])
        if entry not in entries:
            entries.append(entry)
        entries.sort(key=lambda e: e.last_used, reverse=True)
        del entries[MAX_SESSIONS_PER_PEER:]

    def has_session(self, peer_identity_key: bytes) -> bool:
        return bool(self._sessions.get(b64u_encode(peer_identity_key)))

    def encrypt(
        self, peer_identity_key: bytes, plaintext: bytes, one_time_key: bytes | None = None
    ) -> OlmCiphertext:
        peer = b64u_encode(peer_identity_key)
        entries = self._sessions.get(peer)
        if entries:
            session = entries[0].session
        elif one_time_key is not None:
            try:
                session = self.account.create_outbound_session(
                    _curve(peer_identity_key), _curve(one_time_key)
                )
            except (vodozemac.SessionCreationException, vodozemac.KeyException) as error:
                raise LocalE2EError("cannot start an Olm session with that key") from error
            self._touch(peer, _Entry(session, 0))
        else:
            raise LocalE2EError("no Olm session with this device; claim a one-time key first")
        message_type, body = session.encrypt(plaintext).to_parts()
        self.changed.peers.add(peer)  # the sending chain moved on
        return OlmCiphertext(OlmType(message_type), body)

    def decrypt(self, peer_identity_key: bytes, ciphertext: OlmCiphertext) -> bytes:
        peer = b64u_encode(peer_identity_key)
        entries = list(self._sessions.get(peer, ()))
        try:
            message = vodozemac.AnyOlmMessage.from_parts(int(ciphertext.type), ciphertext.body)
        except (vodozemac.DecodeException, ValueError) as error:
            raise DecryptionError("not an Olm message") from error
        if ciphertext.type is OlmType.PRE_KEY:
            pre_key = message.to_pre_key()
            if pre_key is None:
                raise DecryptionError("not an Olm pre-key message")
            matching = [e for e in entries if e.session.session_matches(pre_key)]
            if not matching:
                try:
                    session, plaintext = self.account.create_inbound_session(
                        _curve(peer_identity_key), pre_key
                    )
                except (vodozemac.SessionCreationException, vodozemac.KeyException, ValueError) as error:
                    raise NoSession(
                        "a pre-key message for a one-time key this device no longer has (or a replay)"
                    ) from error
                self.changed.account = True  # its one-time key is used up
                self._touch(peer, _Entry(session, 0))
                return plaintext
            entries = matching
        for entry in entries:
            try:
                plaintext = entry.session.decrypt(message)
            except (vodozemac.OlmDecryptionException, ValueError):
                continue
            self._touch(peer, entry)
            return plaintext
        if entries:
            raise DecryptionError("no Olm session with this device decrypts the message (a replay?)")
        raise NoSession("no Olm session with this device")

    # --- persistence -----------------------------------------------------------------------------
    @property
    def counter(self) -> int:
        """The use counter that orders sessions (``last_used``); kept with the account."""
        return self._counter

    @property
    def peers(self) -> list[str]:
        return list(self._sessions)

    def pickle_account(self, pickle_key: bytes) -> str:
        return self.account.pickle(pickle_key)

    def pickle_peer(self, peer: str, pickle_key: bytes) -> list[dict[str, Any]]:
        """The sessions with one peer device (identity key, b64u), preferred first; [] once none is left."""
        entries = self._sessions.get(peer, [])
        return [{"pickle": e.session.pickle(pickle_key), "last_used": e.last_used} for e in entries]

    def pickle(self, pickle_key: bytes) -> dict[str, Any]:
        """A JSON-able dict whose secrets are vodozemac pickles encrypted under ``pickle_key``."""
        return {
            "account": self.pickle_account(pickle_key),
            "counter": self._counter,
            "sessions": {peer: self.pickle_peer(peer, pickle_key) for peer in self._sessions},
        }

    def take_changed(self) -> Changed:
        """What changed since the last call (a store writes those, and only those, in its next save)."""
        changed, self.changed = self.changed, Changed()
        return changed

    @classmethod
    def from_pickle(cls, value: dict[str, Any], pickle_key: bytes) -> OlmDevice:
        try:
            device = cls(vodozemac.Account.from_pickle(value["account"], pickle_key))
            device._counter = int(value["counter"])
            for peer, entries in value["sessions"].items():
                device._sessions[peer] = [
                    _Entry(vodozemac.Session.from_pickle(e["pickle"], pickle_key), int(e["last_used"]))
                    for e in entries
                ]
        except (vodozemac.PickleException, KeyError, TypeError, ValueError) as error:
            raise E2EError("damaged or foreign Olm pickle") from error
        return device
