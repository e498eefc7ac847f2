"""Write the top-level requirements of each image, from pyproject.toml.

usage: python pyproject_deps.py PYPROJECT OUTDIR

One ``.in`` file per image (see REQUIREMENT_SETS), self-references such as
``lakerag[embed]`` expanded. ``images/lock.sh`` compiles them into the committed
locks ``images/locks/*.txt`` (every pin with its hashes) that the images install;
``tests/images/test_locks.py`` fails when a lock no longer satisfies pyproject.toml.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# lock file -> (extras, include the core dependencies?, keep only / leave out these distributions)
REQUIREMENT_SETS = {
    "api.txt": (["api"], True, None, None),
    "embeddings.txt": (["embed"], True, None, None),
    # The build stage that exports the ONNX model (BAKE_MODEL=packaged); never in a runtime image.
    "export.txt": (["torch"], False, None, None),
    "spark.txt": (["spark"], True, None, None),
    "airflow.txt": (["airflow"], False, None, None),  # the Airflow image does not carry the project
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: dict, extras: list[str], core: bool = True) -> list[str]:
    """The requirement strings of ``extras`` (plus the core dependencies), in file order."""
    project = pyproject["project"]
    own = project["name"].lower()
    optional = project.get("optional-dependencies", {})
    found: list[str] = []
    seen: set[str] = set()

    def add(reqs: list[str]) -> None:
        for req in reqs:
            if _name(req) == own:
                add_extras(re.findall(r"[\w-]+", req[req.index("[") + 1:req.index("]")]))
            elif req not in found:
                found.append(req)

    def add_extras(names: list[str]) -> None:
        for extra in names:
            if extra in seen:
                continue
            if extra not in optional:
                raise SystemExit(f"pyproject.toml has no extra {extra!r} (known: {', '.join(optional)})")
            seen.add(extra)
            add(optional[extra])

    if core:
        add(project.get("dependencies", []))
    add_extras(extras)
    return found


def requirement_sets(pyproject: dict) -> dict[str, list[str]]:
    sets = {}
    for filename, (extras, core, only, leave_out) in REQUIREMENT_SETS.items():
        reqs = requirements(pyproject, extras, core)
        if only is not None:
            reqs = [r for r in reqs if _name(r) in only]
            if not reqs:
                raise SystemExit(f"{filename}: {', '.join(sorted(only))} is not a requirement of {extras}")
        if leave_out:
            reqs = [r for r in reqs if _name(r) not in leave_out]
        sets[filename] = reqs
    return sets


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    pyproject = tomllib.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for filename, reqs in requirement_sets(pyproject).items():
        (out / filename.replace(".txt", ".in")).write_text("".join(f"{r}\n" for r in reqs))


if __name__ == "__main__":
    main()
