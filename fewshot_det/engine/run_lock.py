"""One training run per OUTPUT_DIR: ``OUTPUT_DIR/.lock`` names the run that owns the folder.

Two runs writing one folder would overwrite each other's checkpoints, pointer and logs.
``train`` holds the lock from its start to its end (exceptions included). The file is JSON
``{"pid", "host", "started"}``, created atomically with its content (a hard link of a
complete temp file), so a reader never sees a half-written lock. A lock whose pid is no
longer alive on this host (a killed run) is stale and taken over with a warning; a lock of
another host cannot be checked and always refuses.

The lock is re-entrant within a process: a tool takes it before it writes anything into the
folder (``engine.defaults.default_setup``: log, config.yaml), and ``train`` takes it again;
the folder is released when the outermost holder releases it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from typing import Dict, Optional

__all__ = ["LOCK_NAME", "OutputDirInUse", "RunLock"]

logger = logging.getLogger(__name__)
LOCK_NAME = ".lock"
_HELD: Dict[str, int] = {}  # lock path -> how many RunLocks of this process hold it


class OutputDirInUse(ValueError):
    """Another live run holds the OUTPUT_DIR lock."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _owner_alive(owner: dict) -> bool:
    pid = owner.get("pid")
    # not a positive int: not a lock of ours, treat as alive (never signal pid <= 0: groups)
    return not (isinstance(pid, int) and pid > 0) or pid_alive(pid)


class RunLock:
    """Context manager holding ``<output_dir>/.lock`` for this process.

    Raises (on enter):
        OutputDirInUse: a live run (or a run on another host) holds the folder; the
            message names the folder, the owner's pid, host and start time.
    """

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_NAME)
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.held = False

    def _create(self) -> bool:
        fd, tmp = tempfile.mkstemp(dir=self.output_dir, prefix=f"{LOCK_NAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.owner, f)
            os.link(tmp, self.path)  # fails when the lock exists: create-if-absent, atomic
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def read(self) -> Optional[dict]:
        """The lock's owner, or None when there is no (readable) lock."""
        try:
            with open(self.path) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def acquire(self) -> None:
        key = os.path.realpath(self.path)
        if _HELD.get(key):  # this process owns the folder already (re-entrant)
            _HELD[key] += 1
            self.held = True
            return
        os.makedirs(self.output_dir, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                _HELD[key] = 1
                return
            owner = self.read()
            if owner is None and os.path.exists(self.path):
                logger.warning("%s is unreadable; taking it over", self.path)
            elif owner is None:
                continue  # released meanwhile
            elif owner.get("host") != self.owner["host"] or _owner_alive(owner):
                raise OutputDirInUse(
                    f"{self.output_dir} is in use by another run (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, started {owner.get('started')}): wait for it to "
                    f"end or use another OUTPUT_DIR (remove {self.path} if that run is gone)")
            else:
                logger.warning("taking over the stale lock %s of pid %s (no longer running)",
                               self.path, owner.get("pid"))
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        raise OutputDirInUse(f"could not take the lock {self.path}: other runs keep taking it")

    def release(self) -> None:
        """Remove the lock if this process still owns it (it may have been taken over)."""
        if not self.held:
            return
        self.held = False
        key = os.path.realpath(self.path)
        _HELD[key] = _HELD.get(key, 1) - 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
        owner = self.read()
        if owner is not None and all(owner.get(k) == self.owner[k] for k in ("pid", "host")):
            os.remove(self.path)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
