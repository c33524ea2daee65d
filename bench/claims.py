"""Claims on cells: a lock file beside a record while one run computes it.

Two runs into one results folder must never compute the same cell twice. Before computing a
cell, a unit creates ``.<record name>.lock`` with ``O_CREAT | O_EXCL`` (atomic on local and NFS
v3+ file systems), holding who claimed it: host, pid, the process's start time and the claim's
time. A claim whose process is gone (killed, crashed) is stale and is taken over: on the same
host, when the pid no longer runs or runs a younger process (the pid was reused); on another
host, when the claim is older than :data:`FOREIGN_TTL_S` (that host cannot be asked).
Taking over renames the stale file away first, so of two runs that find it stale only one wins.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

#: a claim from another host older than this is taken over (seconds)
FOREIGN_TTL_S = 24 * 3600.0


@dataclass
class Claim:
    path: Path
    token: str

    def release(self) -> None:
        """Remove the lock if it is still ours (never another run's)."""
        info = _read(self.path)
        if info is not None and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)


def lock_path(record: Path) -> Path:
    return record.with_name(f".{record.name}.lock")


def claim(record: Path) -> Claim | None:
    """Claim the cell whose record is ``record``; None when another live run holds it."""
    path = lock_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        token = uuid.uuid4().hex
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "pid_start": process_start(os.getpid()), "time": time.time(), "token": token}
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            held = _read(path)
            if held is not None and not is_stale(held):
                return None
            if held is None and _age(path) < 10.0:
                return None  # being written right now
            try:  # only one of several runs that found it stale gets to remove it
                os.rename(path, path.with_name(f"{path.name}.stale-{token}"))
                path.with_name(f"{path.name}.stale-{token}").unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return Claim(path, token)
    return None


def release_own(folder: Path) -> int:
    """Remove every claim under ``folder`` that this process holds; returns how many.

    For an interrupted run: Ctrl-C can land between taking a claim and the ``finally`` that
    gives it back, and a lock left behind would hold its cell until found stale."""
    host, pid, n = socket.gethostname(), os.getpid(), 0
    for path in Path(folder).rglob(".*.lock"):
        info = _read(path)
        if info is not None and info.get("host") == host and info.get("pid") == pid:
            path.unlink(missing_ok=True)
            n += 1
    return n


def is_stale(info: dict) -> bool:
    """Whether the process that made the claim ``info`` is gone."""
    if info.get("host") != socket.gethostname():
        return time.time() - float(info.get("time", 0.0)) > FOREIGN_TTL_S
    pid = int(info.get("pid", -1))
    if pid <= 0 or not _alive(pid):
        return True
    start = process_start(pid)
    claimed_by = info.get("pid_start")
    return start is not None and claimed_by is not None and abs(start - claimed_by) > 1.0


def process_start(pid: int) -> float | None:
    """Start time of process ``pid`` (seconds since the epoch), from /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


__all__ = ["Claim", "claim", "lock_path", "is_stale", "process_start", "FOREIGN_TTL_S"]
