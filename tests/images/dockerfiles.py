"""Reading the images' Dockerfiles and the root .dockerignore, for the static tests
and the e2e harness: instructions per stage, and which repo files Docker sends as
the build context."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
# The four images (names in docs/k8s naming contract); each builds with the repo root as context.
IMAGES = ("api", "embeddings", "spark", "airflow")


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, list[str]]  # --mount may repeat
    args: str
    line: int

    def flag(self, name: str) -> str | None:
        values = self.flags.get(name)
        return values[0] if values else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append((start, buffer + line))
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        flags = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags.setdefault(name, []).append(value)
            rest = rest.lstrip()
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, flags, rest, number))
    return global_args, stages


def exec_form(instruction: Instruction) -> list[str]:
    """ENTRYPOINT/CMD in exec (JSON) form; shell form is refused: signals must reach the process."""
    value = json.loads(instruction.args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"line {instruction.line}: {instruction.keyword} must be a JSON list of strings")
    return value


def copy_sources(instruction: Instruction) -> list[str]:
    """Sources of a COPY/ADD from the build context (empty for COPY --from=...)."""
    if instruction.flag("from") is not None:
        return []
    args = instruction.args
    parts = json.loads(args) if args.startswith("[") else args.split()
    return parts[:-1]


# --- .dockerignore, with Docker's rules: Go filepath.Match patterns plus `**`, a pattern
# also excludes everything under a matching directory, `!` re-includes, last match wins.

def read_dockerignore(path: Path = REPO / ".dockerignore") -> list[tuple[bool, str, re.Pattern]]:
    """(re-include?, pattern, regex) per rule, in file order."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = (line[1:] if negate else line).strip().strip("/")
        rules.append((negate, pattern, re.compile(_translate(pattern))))
    return rules


def _translate(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return "^" + out + "$"


def excluded(relpath: str, rules) -> bool:
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, _, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negate
    return result


def context_files(root: Path = REPO, rules=None) -> list[Path]:
    """Files of the build context rooted at ``root`` after .dockerignore."""
    rules = read_dockerignore(root / ".dockerignore") if rules is None else rules
    # Literal heads of the re-include patterns: an excluded directory is walked only
    # when one of them could match below it (saves walking .git and the venvs).
    heads = [re.split(r"[*?\[]", pattern, maxsplit=1)[0] for negate, pattern, _ in rules if negate]
    found = []

    def may_reinclude(rel: str) -> bool:
        return any(head == "" or head.startswith(rel + "/") or (rel + "/").startswith(head) for head in heads)

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if not excluded(rel, rules) or may_reinclude(rel):
                    walk(entry)
            elif not excluded(rel, rules):
                found.append(entry)

    walk(root)
    return found
