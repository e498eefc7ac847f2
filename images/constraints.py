"""Write pip constraints for a development venv from the images' committed locks.

usage: python constraints.py OUT

``make install`` installs the project into .venv with ``-c OUT``, built from the locks of the
images that venv stands in for (DEV_LOCKS). The tests and benches then run on the versions the
images ship, and a clean clone tests what the last commit tested, not whatever PyPI released
since (a fresh install once resolved uvicorn 0.55 while the images kept 0.54, and failed
``make test``). Packages no lock names (pytest, ruff, ...) stay unconstrained. Only versions
are kept: the images check the hashes when they install (``--require-hashes``), and a local
label is dropped, so ``torch==2.13.0`` matches the CPU wheel here and the plain one elsewhere.
Standard library only: it runs before the venv exists. Two locks pinning one package to
different versions is an error that says which.
.venv-airflow (the DAG tests) is not constrained: it adds the lake and the core's boto3 to
Airflow, and botocore refuses the python-dateutil 4 that the airflow image's lock pins.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LOCKS = Path(__file__).resolve().parent / "locks"
# The images .venv stands in for: it runs the API, the jobs and the ONNX export.
DEV_LOCKS = ("api.txt", "embeddings.txt", "export.txt", "spark.txt")
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


def dev_constraints() -> dict[str, str]:
    return constraints([LOCKS / lock for lock in DEV_LOCKS])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        pins = dev_constraints()
    except (OSError, ValueError) as error:
        print(f"constraints.py: {error}", file=sys.stderr)
        return 1
    Path(argv[0]).write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
