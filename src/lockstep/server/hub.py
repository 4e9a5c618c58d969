"""In-process fan-out: which sockets belong to which device, and pushing events to them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol


class Peer(Protocol):
    """What the hub needs of a connection."""

    def push(self, event: dict[str, Any]) -> None: ...

    def close_soon(self, code: int, reason: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self._by_device: defaultdict[str, set[Peer]] = defaultdict(set)

    def attach(self, device_id: str, peer: Peer) -> None:
        self._by_device[device_id].add(peer)

    def detach(self, device_id: str, peer: Peer) -> None:
        peers = self._by_device.get(device_id)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._by_device[device_id]

    def online(self, device_id: str) -> bool:
        return device_id in self._by_device

    def push(self, device_ids: Iterable[str], event: dict[str, Any], *, skip: Peer | None = None) -> None:
        for device_id in device_ids:
            for peer in tuple(self._by_device.get(device_id, ())):
                if peer is not skip:
                    peer.push(event)

    def disconnect(self, device_id: str, event: dict[str, Any], code: int, reason: str) -> None:
        """Tell every socket of a device why, then close them."""
        for peer in tuple(self._by_device.pop(device_id, ())):
            peer.push(event)
            peer.close_soon(code, reason)
