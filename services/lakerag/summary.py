"""The one-screen run summary every stage prints (and writes to lake/_runs/)."""

from __future__ import annotations


def format_summary(summary: dict) -> str:
    """Render a summary dict as aligned lines: scalars first, then one block per section."""
    lines = ["=" * 64, f"LakeRAG {summary.get('title', 'run')}: {'OK' if summary.get('ok', True) else 'FAILED'}"]
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


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)
