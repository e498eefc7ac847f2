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
        if isinstance(value, dict) and value:
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
