"""An authenticated connection for a device with saved state, keeping its device list current."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Self

from lockstep.client import timesync
from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ServerRefused, StateError
from lockstep.client.state import DeviceState
from lockstep.client.timesync import ServerClock
from lockstep.link import idle, probation
from lockstep.link.devices import Role
from lockstep.link.encoding import b64u_encode
from lockstep.link.envelope import Context, Envelope, auth_message, sign
from lockstep.link.wording import idle_text
from lockstep.server.errors import ErrorCode


class DeviceUnlinked(StateError):
    """The server or the signed device list says this device is no longer linked; its keys were wiped."""


@dataclass(slots=True)
class DeviceSession:
    state: DeviceState
    connection: ServerConnection
    clock: ServerClock = field(default_factory=lambda: ServerClock(0.0, 0.0))
    """Server time as measured over this connection (see :mod:`lockstep.client.timesync`)."""

    @classmethod
    async def open(cls, state: DeviceState, *, ca_file: str | None = None) -> Self:
        connection = await ServerConnection.open(state.server_url, ca_file=ca_file)
        session = cls(state, connection)
        try:
            await session.authenticate()
            session.clock = await timesync.measure(connection)
            await session.after_open()
        except BaseException:
            await connection.close()
            raise
        return session

    async def authenticate(self) -> None:
        if self.connection.origin != self.state.origin:
            raise StateError(f"server now says it is {self.connection.origin}, not {self.state.origin}")
        signature = sign(
            self.state.device_key(), Context.AUTH, auth_message(self.connection.challenge, self.state.origin)
        )
        try:
            result = await self.connection.request(
                "auth", device_id=self.state.device_id, signature=b64u_encode(signature)
            )
        except ServerRefused as error:
            if error.code == ErrorCode.DEVICE_UNKNOWN:
                self.state.wipe()
                raise DeviceUnlinked(
                    "this device was unlinked from its account; its keys are wiped"
                ) from error
            raise
        self.accept_device_list(Envelope.from_json(result["device_list"]))

    async def after_open(self) -> None:
        """Signed in, clock measured: a companion checks its list's age (idle logout, §4.5)."""
        if self.state.role is Role.COMPANION:
            self.idle_countdown()

    def now_ms(self) -> int:
        """The later of server time and this machine's own clock: a server that reports an earlier
        time cannot keep a companion alive past its list's age (§4.5)."""
        return max(self.clock.now_ms(), time.time_ns() // 1_000_000)

    def probation_now(self) -> int:
        """The earlier of server time and this machine's own clock: a server that reports a later time
        cannot end a companion's probation early (linking.md §4.6)."""
        return probation.judged_now(self.clock.now_ms(), time.time_ns() // 1_000_000)

    def idle_countdown(self) -> int | None:
        """A companion whose newest list is 14 days old wipes its keys (:class:`DeviceUnlinked`);
        otherwise the days left to show once fewer than 3 remain."""
        if idle.expired(self.state.devices, self.now_ms()):
            self.state.wipe()
            raise DeviceUnlinked(f"{idle_text('logged_out')} Its keys are wiped.")
        return idle.countdown(self.state.devices, self.now_ms())

    def accept_device_list(self, envelope: Envelope) -> None:
        """Keep the newest valid list; a list without this device means it was unlinked (§4.3)."""
        state = self.state.with_device_list(envelope)
        if state.devices.find(state.device_id) is None:
            self.state.wipe()
            raise DeviceUnlinked("this device is no longer in the account's device list; its keys are wiped")
        entry = state.devices.find(state.device_id)
        assert entry is not None
        self.state = replace(state, device_name=entry.name)
        self.state.save()

    async def close(self) -> None:
        await self.connection.close()
