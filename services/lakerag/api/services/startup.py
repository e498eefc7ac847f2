"""Startup checks of the API, as the original's startup script did them: validate
the configuration (fail fast, naming the variable to set) and log what this
process runs on — Python, CPU quota, memory — then the model and index status.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path

from ...config import Settings
from ...embedding import cpu_quota
from ...index.sync import make_local_dir

log = logging.getLogger("lakerag.startup")


class StartupError(RuntimeError):
    """The API cannot start with this configuration; the message lists what to set."""


def problems(settings: Settings) -> list[str]:
    """What the API needs beyond valid settings (config.Settings checks the values), each
    naming the variable to fix."""
    found = settings.missing("api")
    try:
        make_local_dir(Path(settings.index_dir))
    except OSError as exc:
        found.append(f"LAKERAG_INDEX_DIR={settings.index_dir!r} cannot be used ({exc}): point it at a writable "
                     "directory (a volume in Kubernetes)")
    return found


def check(settings: Settings) -> None:
    found = problems(settings)
    if found:
        raise StartupError("the API cannot start:\n  " + "\n  ".join(found))


def memory() -> dict:
    """Container memory limit (cgroup v2/v1) and the host's total/available, in bytes (None if unknown)."""
    info: dict = {"limit": None, "total": None, "available": None}
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # v1 reports "no limit" as a huge number
            info["limit"] = int(raw)
        break
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, value = line.split(":", 1)
            if name in {"MemTotal", "MemAvailable"}:
                info["total" if name == "MemTotal" else "available"] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return info


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.1f} GiB"


def log_environment(settings: Settings) -> dict:
    mem = memory()
    facts = {
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "cpu_quota": cpu_quota(),
        "cpu_count": os.cpu_count(),
        "memory_limit": _gib(mem["limit"]) if mem["limit"] else "none",
        "memory_total": _gib(mem["total"]),
        "memory_available": _gib(mem["available"]),
    }
    log.info("LakeRAG API starting: Python %s, CPU quota %s (of %s), memory limit %s, host memory %s total / %s "
             "available", facts["python"], facts["cpu_quota"], facts["cpu_count"], facts["memory_limit"],
             facts["memory_total"], facts["memory_available"])
    log.info("store %s, index dir %s (poll every %gs), model %s, answers %s, API key %s", settings.store_uri,
             settings.index_dir, settings.index_poll_seconds, settings.embedding_model,
             f"Gemini {settings.gemini_model}" if settings.gemini_api_key else "extractive (GEMINI_API_KEY unset)",
             "required for writes" if settings.api_key else "NOT set: uploads, deletes and reloads are open")
    return facts
