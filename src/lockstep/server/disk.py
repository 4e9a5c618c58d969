"""The disk under the data and media folders (SECURITY.md "Server, network and disk").

Before the server announces itself, :func:`check_folder` proves each folder can be written and has
room, or gives a one-line reason. While it runs, :class:`DiskGuard` refuses requests that would add
data once free space falls below a reserve (``storage_full``), so the reserve is left for what must
still work on a full disk: signing in, reading, acknowledging (which deletes) and SQLite's own
journal. Writes resume by themselves once there is room again.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lockstep.server.errors import StorageFull

PROBE_BYTES = 64 * 1024
"""What the start-up check writes (and deletes) to prove a folder takes data."""


class DiskProblem(Exception):
    """A data or media folder the server cannot use; the message is one line for the operator."""


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on ``folder``'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _reason(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "its disk is full"
    if error.errno == errno.EROFS:
        return "it is on a read-only file system"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return error.strerror or str(error)


def check_folder(folder: Path, what: str, min_free_bytes: int, files: Sequence[str] = ()) -> None:
    """Create ``folder`` if needed, write and delete a probe file in it, open each of ``files`` that
    exists for writing, and require ``min_free_bytes`` free; :class:`DiskProblem` otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DiskProblem(f"the {what} folder {folder} cannot be created: {_reason(error)}") from error
    if not folder.is_dir():
        raise DiskProblem(f"the {what} folder {folder} is not a folder")
    probe = folder / f".lockstep-write-check-{os.getpid()}"
    try:
        try:
            with probe.open("wb") as output:
                output.write(b"\0" * PROBE_BYTES)
                output.flush()
                os.fsync(output.fileno())
            for name in files:
                if (folder / name).exists():
                    with (folder / name).open("ab"):
                        pass  # opened for writing, nothing written
        finally:
            probe.unlink(missing_ok=True)
    except OSError as error:
        raise DiskProblem(f"the {what} folder {folder} cannot be written: {_reason(error)}") from error
    free = free_bytes(folder)
    if free < min_free_bytes:
        raise DiskProblem(
            f"the {what} folder {folder} has {_mib(free)} free, less than the {_mib(min_free_bytes)} "
            "Lockstep keeps in reserve (LOCKSTEP_MIN_FREE_BYTES)"
        )


@dataclass(frozen=True, slots=True)
class DiskGuard:
    """Refuses new data while any of ``folders`` has less than ``min_free_bytes`` free.

    Free space is read on every check (``statvfs`` costs microseconds), so writes resume as soon as
    there is room again.
    """

    folders: Sequence[Path]
    min_free_bytes: int

    def free(self) -> int:
        """The least free space among the folders (a folder not made yet does not count)."""
        sizes = []
        for folder in self.folders:
            with contextlib.suppress(FileNotFoundError):
                sizes.append(free_bytes(folder))
        return min(sizes, default=self.min_free_bytes)

    def check(self, adding: int = 0) -> None:
        """:class:`StorageFull` unless ``adding`` more bytes leave the reserve untouched."""
        if self.min_free_bytes and self.free() - adding < self.min_free_bytes:
            raise StorageFull(f"less than {self.min_free_bytes} bytes would be left free")
