"""Write pip constraints for a development venv from the images' committed locks.

usage: python constraints.py dev|airflow OUT

``make install`` installs the project into .venv with ``-c OUT``, built from the locks of the
images that venv stands in for (VENVS). The tests and benches then run on the versions the
images ship, and a clean clone tests what the last commit tested, not whatever PyPI released
since (a fresh install once resolved uvicorn 0.55 while the images kept 0.54, and failed
``make test``). Packages no lock names (pytest, ruff, ...) stay unconstrained. Only versions
are kept: the images check the hashes when they install (``--require-hashes``), and a local
label is dropped, so ``torch==2.13.0`` matches the CPU wheel here and the plain one elsewhere.
Standard library only: it runs before the venv exists. Two locks pinning one package to
different versions is an error that says which. .venv-airflow (``make airflow-env``, the DAG
tests) takes only Airflow's own packages from the airflow image's lock: it adds the lake and
the core's boto3 to Airflow, and botocore refuses the python-dateutil 4 that lock pins.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LOCKS = Path(__file__).resolve().parent / "locks"
# venv -> (the locks of the images it stands in for, the distributions taken from them: a name prefix).
# .venv runs the API, the jobs and the ONNX export; .venv-airflow the DAG.
VENVS = {"dev": (("api.txt", "embeddings.txt", "export.txt", "spark.txt"), ""),
         "airflow": (("airflow.txt",), "apache-airflow")}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        if not match:
            raise ValueError(f"{path.name}: not an exact pin: {line}")
        pins[canonical(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return pins


def constraints(locks: list[Path]) -> dict[str, str]:
    """name -> version (without a local label) over ``locks``; ValueError on a disagreement."""
    chosen: dict[str, tuple[str, str]] = {}
    for lock in locks:
        for name, (version, _) in read_lock(lock).items():
            public = version.split("+", 1)[0]
            if name in chosen and chosen[name][0] != public:
                raise ValueError(f"{chosen[name][1]} pins {name}=={chosen[name][0]} but {lock.name} pins "
                                 f"{name}=={public}: re-lock them together (images/lock.sh)")
            chosen.setdefault(name, (public, lock.name))
    return {name: version for name, (version, _) in sorted(chosen.items())}


def venv_constraints(venv: str) -> dict[str, str]:
    locks, prefix = VENVS[venv]
    pins = constraints([LOCKS / lock for lock in locks])
    return {name: version for name, version in pins.items() if name.startswith(prefix)}


def drift(venv: str) -> dict[str, tuple[str | None, str]]:
    """name -> (installed here or None, locked) for each of ``venv``'s constraints this Python
    does not have at the locked version (the tests call it inside the venv)."""
    from importlib.metadata import PackageNotFoundError, version

    differ = {}
    for name, locked in venv_constraints(venv).items():
        try:
            installed = version(name).split("+", 1)[0]
        except PackageNotFoundError:
            installed = None
        if installed != locked:
            differ[name] = (installed, locked)
    return differ


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in VENVS:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        pins = venv_constraints(argv[0])
    except (OSError, ValueError) as error:
        print(f"constraints.py: {error}", file=sys.stderr)
        return 1
    Path(argv[1]).write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
