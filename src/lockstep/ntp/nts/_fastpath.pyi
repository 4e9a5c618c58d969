from collections.abc import Callable, Hashable, Sequence

from typing_extensions import Buffer

class FastPath:
    def __init__(self, random_bytes: Callable[[int], bytes], chunk: int = 4096) -> None: ...
    def respond(self, request: bytes, header: bytes, key_id: int, /) -> bytes | None: ...
    def answer_batch(
        self,
        fd: int,
        messages: Buffer,
        count: int,
        template: bytes,
        table: bytes,
        template_second: int,
        clock_offset: int,
        /,
    ) -> tuple[int, int, list[int]]: ...
    def take(self, length: int, /) -> bytes: ...
    def forget(self) -> None: ...
    def set_keys(
        self, current_id: int, keep: int, rotation: int, keys: Sequence[tuple[int, bytes]], /
    ) -> None: ...

def send_basic(fd: int, head: Buffer, sockaddr: Buffer, clock_offset: int, /) -> None: ...
def charge_batch(
    tats: dict[Hashable, int], clients: list[Hashable], arrivals: list[int], cost: int, window: int, /
) -> tuple[list[int], int]: ...
