"""File mechanics under ``RunDir``: writing a file whole, an advisory lock, and the
store of trained weights (``RunDir`` names the files)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from jaxnas.search import checkpoint as checkpoint_lib
from jaxnas.search.config import RunDirectoryError


def atomic_write(path: Path, payload: bytes) -> None:
    """Writes ``path`` whole or not at all (a failed write leaves no temporary file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def hold_lock(path: Path):
    """Opens ``path`` and takes its advisory ``flock`` (the OS releases it when the
    process ends), writing this process's id into it; returns the open file.

    Raises:
      OSError: the file cannot be opened.
      BlockingIOError: another process holds the lock; its ``holder`` attribute is
        the id that process wrote.
    """
    lock = open(path, "a+")  # noqa: SIM115 - held until the caller closes it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        busy = BlockingIOError(f"{path} is locked")
        busy.holder = lock.read().strip() or "unknown"
        lock.close()
        raise busy from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def lock_holder_alive(path: Path) -> bool:
    """Whether the process whose id ``path`` holds is alive (False without one)."""
    try:
        os.kill(int(path.read_text().strip()), 0)
        return True
    except PermissionError:  # alive, owned by another user
        return True
    except (OSError, ValueError):
        return False


class WeightStore:
    """Trained parameters by canonical hash, a file each (``HASH`` + ``suffix``) in
    ``directory``, arrays keyed by field path (so that a resumed run has them)."""

    def __init__(self, directory: Path, suffix: str):
        self.directory = directory
        self.suffix = suffix

    def _path(self, arch_hash: str) -> Path:
        return self.directory / f"{arch_hash}{self.suffix}"

    def has(self, arch_hash: str) -> bool:
        return self._path(arch_hash).is_file()

    def store(self, arch_hash: str, params: Any) -> None:
        atomic_write(self._path(arch_hash), checkpoint_lib.params_to_bytes(params))

    def load(self, arch_hash: str, like: Any) -> Any:
        path = self._path(arch_hash)
        try:
            return checkpoint_lib.params_from_bytes(path.read_bytes(), like)
        except (checkpoint_lib.CheckpointMismatch, ValueError, TypeError) as error:
            raise RunDirectoryError(f"{path} is damaged ({error})") from None
