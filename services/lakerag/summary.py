"""The one-screen run summary every stage prints (and writes to lake/_runs/)."""

from __future__ import annotations


def format_summary(summary: dict, verdicts: tuple[str, str] = ("OK", "FAILED")) -> str:
    """Render a summary dict as aligned lines: scalars first, then one block per section.
    ``verdicts``: the headline's word when ``ok`` is true and when it is false."""
    lines = ["=" * 64, f"LakeRAG {summary.get('title', 'run')}: {verdicts[0] if summary.get('ok', True) else verdicts[1]}"]
    for key, value in summary.items():
        if key in {"title", "ok"} or isinstance(value, (dict, list)):
            continue
        lines.append(f"  {key:24} {value}")
    for key, value in summary.items():
        if key == "stages" and isinstance(value, dict):  # `pipeline status`: a line per stage, not its summary
            lines.append("  stages (`lakerag pipeline status --json` has every field):")
            lines += [f"    {name:6} {stage_line(name, stage)}" for name, stage in value.items()]
        elif isinstance(value, dict) and value:
            lines.append(f"  {key}:")
            for inner, item in value.items():
                lines.append(f"    {inner:22} {_short(item)}")
        elif isinstance(value, list) and value:
            lines.append(f"  {key} ({len(value)}):")
            for item in value[:15]:
                lines.append(f"    - {_short(item)}")
            if len(value) > 15:
                lines.append(f"    ... and {len(value) - 15} more")
    lines.append("=" * 64)
    return "\n".join(lines)


def stage_line(name: str, stage: dict | None) -> str:
    """A stage's last run in one line: the verdict, when and how long, then what it did."""
    if stage is None:
        return "not run yet"
    seconds = stage.get("seconds")
    seconds = seconds.get("total") if isinstance(seconds, dict) else seconds
    when = f"finished {stage.get('finished_at') or '(time unknown)'}" + \
        (f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else "")
    if not stage.get("ok", True):
        return f"FAILED: {stage.get('error') or stage.get('reason') or 'see its summary'} ({when})"
    did = _STAGE_WORK.get(name, lambda s: "")(stage)
    return f"ok, {when}" + (f": {did}" if did else "")


def _etl_work(s: dict) -> str:
    f = s.get("files") or {}
    work = ", ".join(f"{f[key]} {word}" for key, word in (("seen", "files seen"), ("new", "new"), ("changed", "changed"),
                                                           ("deleted", "deleted"), ("quarantined", "quarantined"))
                     if key in f)
    gold = (s.get("rows") or {}).get("gold")
    work += f"; {_count(gold, 'gold chunk')}" if gold is not None else ""
    work += f", all re-extracted ({s['retexted']})" if s.get("retexted") else ""
    return work + (f", all re-chunked ({s['rechunked']})" if s.get("rechunked") else "")


def _embed_work(s: dict) -> str:
    work = ", ".join(f"{s[key]} {key}" for key in ("embedded", "deleted", "unchanged") if key in s)
    return work + (f" ({s['note']})" if s.get("note") else "")


def _index_work(s: dict) -> str:
    if s.get("published"):
        return f"published {s.get('version')} ({_count(s.get('vector_count'), 'vector')})"
    return f"nothing published: {s.get('reason') or 'no change'}"


def _count(n, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


_STAGE_WORK = {"etl": _etl_work, "embed": _embed_work, "index": _index_work}


def _short(value, nested: bool = False) -> str:
    """One value on one line: a dict's items as k=v (a nested dict in parentheses; a stage summary
    without its title, the name it is listed under), a nested list of records as its length (the
    records have their own section or command)."""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        shown = {k: v for k, v in value.items() if not (k == "title" and "ok" in value)}
        items = ", ".join(f"{k}={_short(v, nested=True)}" for k, v in shown.items())
        return f"({items})" if nested else items
    if nested and isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return f"[{len(value)} entries]"
    return str(value)
