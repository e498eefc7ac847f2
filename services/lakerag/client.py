"""``lakerag search`` / ``lakerag ask``: query a running API from the shell and print the result readably."""

from __future__ import annotations

import logging
import sys
import textwrap

import httpx

WIDTH = 100
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would clutter the output


def _post(url: str, path: str, payload: dict, api_key: str) -> dict | None:
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.post(url.rstrip("/") + path, json=payload, headers=headers, timeout=120)
    except httpx.HTTPError as exc:
        print(f"lakerag: cannot reach the API at {url} ({exc}); is `lakerag serve` running? (--url to point "
              "elsewhere)", file=sys.stderr)
        return None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        print(f"lakerag: {path} answered {response.status_code}: {detail}", file=sys.stderr)
        return None
    return response.json()


def _where(hit: dict) -> str:
    where = hit["source"] + (f", page {hit['page']}" if hit.get("page") else "")
    return f"{hit.get('title') or hit['source']}  ({where})"


def _snippet(text: str, limit: int = 320) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


def format_search(body: dict) -> str:
    if not body["matched"]:
        return f"No relevant match. {body.get('reason') or ''}".strip()
    count = len(body["hits"])
    lines = [(f"{count} result{'s' if count != 1 else ''} (index {body['index_version']}, "
              f"encode {body['encode_ms']:.1f} ms, search {body['search_ms']:.1f} ms)"), ""]
    for hit in body["hits"]:
        lines.append(f"{hit['rank']}. [{hit['score']:.3f}] {_where(hit)}")
        lines.extend(textwrap.wrap(_snippet(hit["text"]), WIDTH, initial_indent="   ", subsequent_indent="   "))
        lines.append("")
    return "\n".join(lines).rstrip()


def format_answer(body: dict) -> str:
    lines = textwrap.wrap(body["answer"], WIDTH) or [body["answer"]]
    if not body["matched"]:
        return "\n".join(lines + ([f"({body['reason']})"] if body.get("reason") else []))
    lines += ["", f"Sources ({body['mode']}, index {body['index_version']}):"]
    lines += [f"  [{n}] {_where(hit)}" for n, hit in enumerate(body["chunks"], start=1)]
    return "\n".join(lines)


def _query(url: str, path: str, payload: dict, api_key: str, mode: str, render) -> int:
    body = _post(url, path, {**payload, **({"mode": mode} if mode else {})}, api_key)
    if body is None:
        return 1
    print(render(body))
    return 0


def search(url: str, text: str, k: int = 5, api_key: str = "", mode: str = "") -> int:
    """``mode``: dense, lexical or hybrid; empty means the server's default."""
    return _query(url, "/search", {"query": text, "k": k}, api_key, mode, format_search)


def ask(url: str, text: str, k: int = 5, api_key: str = "", mode: str = "") -> int:
    return _query(url, "/answer", {"question": text, "k": k}, api_key, mode, format_answer)
