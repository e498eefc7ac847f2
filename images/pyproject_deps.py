"""Print the requirements of the lakerag project for the given extras, one per line.

Image builds install these in a layer that depends only on pyproject.toml, then
install the project itself with --no-deps, so a code change rebuilds in seconds.
Self-references such as ``lakerag[embed]`` are expanded.

usage: python pyproject_deps.py PYPROJECT [EXTRA ...] [--exclude NAME ...] [--only NAME ...] [--no-core]
"""

from __future__ import annotations

import argparse
import re
import tomllib


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: dict, extras: list[str], exclude: set[str] = frozenset(), core: bool = True) -> list[str]:
    project = pyproject["project"]
    own = project["name"].lower()
    optional = project.get("optional-dependencies", {})
    exclude = {e.lower().replace("_", "-") for e in exclude}
    found: list[str] = []
    seen_extras: set[str] = set()

    def add(reqs: list[str]) -> None:
        for req in reqs:
            if _name(req) == own:
                add_extras(re.findall(r"[\w-]+", req[req.index("[") + 1:req.index("]")]))
            elif _name(req) not in exclude and req not in found:
                found.append(req)

    def add_extras(names: list[str]) -> None:
        for extra in names:
            if extra in seen_extras:
                continue
            if extra not in optional:
                raise SystemExit(f"pyproject.toml has no extra {extra!r} (known: {', '.join(optional)})")
            seen_extras.add(extra)
            add(optional[extra])

    if core:
        add(project.get("dependencies", []))
    add_extras(extras)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pyproject")
    parser.add_argument("extras", nargs="*")
    parser.add_argument("--exclude", action="append", default=[], help="leave this distribution out")
    parser.add_argument("--only", action="append", default=[], help="print only this distribution")
    parser.add_argument("--no-core", action="store_true", help="only the extras' own requirements")
    args = parser.parse_args()
    with open(args.pyproject, "rb") as handle:
        data = tomllib.load(handle)
    found = requirements(data, args.extras, set(args.exclude), core=not args.no_core)
    if args.only:
        wanted = {_name(name) for name in args.only}
        found = [req for req in found if _name(req) in wanted]
        missing = wanted - {_name(req) for req in found}
        if missing:
            raise SystemExit(f"not a requirement of extras {args.extras}: {', '.join(sorted(missing))}")
    print("\n".join(found))


if __name__ == "__main__":
    main()
