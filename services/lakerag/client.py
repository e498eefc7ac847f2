"""``lakerag search|ask|summarize|upload|documents``: talk to a running API over HTTP and print
the result readably. Every call returns the command's exit code (0 ok, 1 failed, said on stderr)."""

from __future__ import annotations

import logging
import re
import sys
import textwrap
from pathlib import Path

import httpx

from .config import header_safe
from .extract import FILE_TYPES

WIDTH = 100
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would clutter the output


def _post(url: str, path: str, payload: dict, api_key: str) -> dict | None:
    return _call("POST", url, path, api_key, json=payload)


def _call(method: str, url: str, path: str, api_key: str, **kwargs) -> dict | None:
    """The JSON body of a 200 answer, or None after saying on stderr what went wrong."""
    if not header_safe(api_key):
        print("lakerag: the API key (--api-key or LAKERAG_API_KEY) has a character that is not printable ASCII, "
              "which an HTTP header cannot carry; check it", file=sys.stderr)
        return None
    headers = {"X-API-Key": api_key} if api_key else {}
    url = url if "://" in url else f"http://{url}"  # localhost:8000, as curl takes it
    try:
        response = httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=120, **kwargs)
    except httpx.HTTPError as exc:
        print(f"lakerag: cannot reach the API at {url} ({exc}); is `lakerag serve` running? (--url or "
              "LAKERAG_URL to point elsewhere)", file=sys.stderr)
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # every answer of the API, errors too, is a JSON object
        print(f"lakerag: {method} {path} answered {response.status_code} ({_gist(response)}), not JSON: that is not "
              f"the LakeRAG API at {url} (a proxy's error page, or --url pointing elsewhere)", file=sys.stderr)
        return None
    if not response.is_success:
        detail = _readable(body.get("detail", body))
        print(f"lakerag: {method} {path} answered {response.status_code}: {detail}", file=sys.stderr)
        return None
    return body


def _gist(response: httpx.Response) -> str:
    """An HTML page's <title>, else the start of the text: enough to recognise whose page it is."""
    title = re.search(r"<title[^>]*>(.*?)</title>", response.text, re.IGNORECASE | re.DOTALL)
    text = title.group(1) if title else re.sub(r"<[^>]+>", " ", response.text)
    gist = " ".join(text.split())
    return (gist[:80] + " …" if len(gist) > 80 else gist) or response.headers.get("content-type", "empty body")


def _readable(detail: object) -> str:
    """FastAPI's validation errors (a list of {loc, msg, ...}) as "field: message; ..."."""
    if not isinstance(detail, list):
        return str(detail)
    parts = []
    for error in detail:
        if not isinstance(error, dict):
            parts.append(str(error))
            continue
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


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
    lines = [(f"{count} result{'s' if count != 1 else ''} (index {_version(body)}, "
              f"encode {body['encode_ms']:.1f} ms, search {body['search_ms']:.1f} ms)"), ""]
    for hit in body["hits"]:
        lines.append(f"{hit['rank']}. [{hit['score']:.3f}] {_where(hit)}")
        lines.extend(textwrap.wrap(_snippet(hit["text"]), WIDTH, initial_indent="   ", subsequent_indent="   "))
        lines.append("")
    return "\n".join(lines).rstrip()


def format_answer(body: dict) -> str:
    return _with_sources(body["answer"], body)


def format_summary(body: dict) -> str:
    return _with_sources(body["summary"], body)


def _with_sources(text: str, body: dict) -> str:
    """An answer or summary, then its numbered sources ([n] = chunks[n-1])."""
    lines = textwrap.wrap(text, WIDTH) or [text]
    if not body["matched"]:
        return "\n".join(lines + ([f"({body['reason']})"] if body.get("reason") else []))
    lines += ["", f"Sources ({body['mode']}, index {_version(body)}):"]
    lines += [f"  [{n}] {_where(hit)}" for n, hit in enumerate(body["chunks"], start=1)]
    return "\n".join(lines)


def _version(body: dict) -> str:
    replayed = (body.get("lineage") or {}).get("replayed")
    return body["index_version"] + (", replayed" if replayed else "")


def _query(url: str, path: str, payload: dict, api_key: str, mode: str, render, as_of: str = "") -> int:
    """``as_of``: a retained index version to replay on instead of the served one."""
    body = _post(url, path, {**payload, **({"mode": mode} if mode else {}), **({"as_of": as_of} if as_of else {})},
                 api_key)
    if body is None:
        return 1
    print(render(body))
    return 0


def search(url: str, text: str, k: int = 5, api_key: str = "", mode: str = "", as_of: str = "", doc_id: str = "",
           source: str = "") -> int:
    """``mode``: dense, lexical or hybrid; empty means the server's default. ``doc_id`` (see
    doc_id_of) or ``source`` (a raw/ key prefix) limit the hits."""
    payload = {"query": text, "k": k, **_filters(doc_id, source)}
    return _query(url, "/search", payload, api_key, mode, format_search, as_of)


def ask(url: str, text: str, k: int = 5, api_key: str = "", mode: str = "", as_of: str = "", doc_id: str = "",
        source: str = "") -> int:
    payload = {"question": text, "k": k, **_filters(doc_id, source)}
    return _query(url, "/answer", payload, api_key, mode, format_answer, as_of)


def _filters(doc_id: str, source: str) -> dict:
    return {**({"doc_id": doc_id_of(doc_id)} if doc_id else {}),
            **({"source_prefix": _raw_key(source)} if source else {})}


def doc_id_of(name: str) -> str:
    """The doc_id a user names: the id itself, or the key as `lakerag documents` lists it
    (``raw/report.pdf``), or the file name uploaded (``report.pdf``)."""
    from .lake import doc_id_for

    if re.fullmatch(r"[0-9a-f]{16}", name):
        return name
    return doc_id_for(_raw_key(name))


def _raw_key(name: str) -> str:
    return name if name.startswith("raw/") else f"raw/{name}"


def _said_how_named(code: int, name: str) -> int:
    """After a failed call about document ``name``: which key it was taken as, when not a doc_id."""
    if code and (doc_id := doc_id_of(name)) != name:
        key = _raw_key(name)
        taken_as = f"has doc_id {doc_id}" if name == key else f"was looked up as {key} (doc_id {doc_id})"
        print(f"lakerag: {name} {taken_as}; `lakerag documents` lists each document's key", file=sys.stderr)
    return code


def summarize(url: str, query: str = "", doc_id: str = "", k: int = 8, api_key: str = "", mode: str = "",
              as_of: str = "", source: str = "") -> int:
    """A whole document (``doc_id``: see doc_id_of) or what the corpus (or ``source``, a raw/ key
    prefix) says about ``query``."""
    payload = {"doc_id": doc_id_of(doc_id)} if doc_id else {"query": query, "k": k, **_filters("", source)}
    code = _query(url, "/summarize", payload, api_key, mode if not doc_id else "", format_summary, as_of)
    return _said_how_named(code, doc_id) if doc_id else code


def documents_to_upload(paths: list[Path]) -> list[Path]:
    """The files named, and under each directory named the documents the pipeline reads
    (extract.FILE_TYPES; hidden files and other types skipped). Raises ValueError when a
    directory holds none, or when two files would land on one key (raw/ keys are file names)."""
    files = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = [f for f in sorted(path.rglob("*")) if f.is_file()
                 and not any(part.startswith(".") for part in f.relative_to(path).parts)]
        documents = [f for f in found if f.suffix.lower() in FILE_TYPES]
        if not documents:
            raise ValueError(f"{path} holds no {', '.join(FILE_TYPES)} files")
        if len(documents) < len(found):
            print(f"{path}: skipping {len(found) - len(documents)} file(s) of other types", file=sys.stderr)
        files += documents
    by_name: dict[str, Path] = {}
    for file in files:
        if file.name in by_name and by_name[file.name].resolve() != file.resolve():
            raise ValueError(f"{by_name[file.name]} and {file} would both be stored as raw/{file.name} "
                             "(raw/ keys are file names): rename one, or upload them apart")
        by_name[file.name] = file
    return list(by_name.values())


def upload(url: str, paths: list[Path], api_key: str = "") -> int:
    """POST each file (each document under a directory) to /documents; go on after a failure,
    exit 1 if any failed."""
    try:
        paths = documents_to_upload(paths)
    except ValueError as exc:
        print(f"lakerag: {exc}; nothing uploaded", file=sys.stderr)
        return 1
    failed, stored, note, unchanged = 0, 0, "", []
    for path in paths:
        with open(path, "rb") as handle:
            body = _call("POST", url, "/documents", api_key, files={"file": (path.name, handle)})
        if body is None:
            failed += 1
            continue
        if body.get("unchanged"):  # the same bytes were stored already: nothing written, nothing to index
            unchanged.append(body["note"])
            mark = "  (unchanged: already stored)"
        else:
            stored += 1
            note = body["note"]  # the server knows what indexes them: Airflow, its own watcher or a manual run
            mark = "  (replaced)" if body.get("replaced") else ""
        print(f"{body['key']}  doc_id {body['doc_id']}  {body['size']} bytes{mark}")
    if note:  # what was stored is indexed whatever else failed
        print(note if stored == 1 else note.replace(" indexes it", " indexes them"))
    elif unchanged:
        print(unchanged[0] if len(unchanged) == 1 else f"nothing written: {len(unchanged)} files were already stored")
    if failed:
        print(f"lakerag: {failed} of {len(paths)} file{'s' if len(paths) != 1 else ''} failed (above)",
              file=sys.stderr)
    return 1 if failed else 0


def format_documents(body: dict) -> str:
    if not body["documents"]:
        return "no documents yet: `lakerag upload FILE...` adds some"
    lines = []
    for doc in body["documents"]:
        chunks = f"{doc['chunks']} chunk{'' if doc['chunks'] == 1 else 's'}" if doc.get("chunks") is not None else ""
        detail = "; ".join(x for x in (chunks, doc.get("reason") or "") if x)
        lines.append(f"{doc['doc_id']}  {doc['state']:11}  {doc['key']}" + (f"  ({detail})" if detail else ""))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(body["counts"].items()))
    lines += ["", f"{counts}; index {body.get('index_version') or 'none yet'}"]
    return "\n".join(lines)


def list_documents(url: str, api_key: str = "") -> int:
    body = _call("GET", url, "/documents", api_key)
    if body is None:
        return 1
    print(format_documents(body))
    return 0


def delete_document(url: str, doc_id: str, api_key: str = "") -> int:
    """Delete the document ``doc_id`` names (see doc_id_of)."""
    body = _call("DELETE", url, f"/documents/{doc_id_of(doc_id)}", api_key)
    if body is None:
        return _said_how_named(1, doc_id)
    print(f"deleted {body['key']} ({body['doc_id']}); {body['note']}")
    return 0
