"""Whether a stage's started-marker (``lake/_runs/<stage>.started.json``) belongs to a run in flight.

A stage writes the marker when it starts and its summary removes it, so a marker left behind means
the run is still going or died mid-way (kill -9, out of memory). On the host that wrote it the two
can be told apart: the process that wrote it still runs or it does not (its start time, from /proc,
tells a reused pid apart). From another host (the DAG's pods, the API's pod) the marker alone
cannot; on S3 the store's run lease can (pipeline.health: a live lease held by the marker's process).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

MarkerState = Literal["running", "gone", "elsewhere"]


def this_process() -> dict:
    """What a marker records about its writer."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_started": _start_ticks(os.getpid())}


def marker_state(marker: dict) -> MarkerState:
    """``running``: its process still runs on this host; ``gone``: it wrote the marker on this host
    and no longer runs; ``elsewhere``: written on another host, which cannot be checked from here."""
    if marker.get("host") != socket.gethostname() or not isinstance(marker.get("pid"), int):
        return "elsewhere"
    pid = marker["pid"]
    if pid == os.getpid():
        return "running"
    ticks = _start_ticks(pid)
    if ticks is not None:  # Linux: the pid runs, and is the same process (not a reused pid)
        recorded = marker.get("process_started")
        return "running" if recorded is None or recorded == ticks else "gone"
    if Path("/proc/self/stat").exists():
        return "gone"  # /proc is there and has no such (live) process
    try:  # no /proc (macOS): whether the pid exists at all
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "running"
    return "running"


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot; None when it is not running (or a
    zombie) or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": comm may hold spaces
    if fields[0] in {"Z", "X"}:
        return None  # dead, not yet reaped by its parent
    return int(fields[19])
