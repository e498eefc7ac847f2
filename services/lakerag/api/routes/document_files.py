"""GET /documents/{doc_id}/content: the stored file itself, so a citation can open its source.

Served sandboxed: an uploaded HTML file must not run script in the API's origin (the
console keeps the session's API key there).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.responses import StreamingResponse

from ...extract import FILE_TYPES
from ...lake import RAW_PREFIX, raw_keys_for
from ...store import NotFound, StoreError, read_blocks, reader_size
from ..deps import State, Store

log = logging.getLogger(__name__)
router = APIRouter(tags=["documents"])

# HTML and Markdown as text: shown as written, nothing rendered in the API's origin.
MEDIA_TYPES = {ext: {"pdf": "application/pdf", "json": "application/json"}.get(kind, "text/plain; charset=utf-8")
               for ext, kind in FILE_TYPES.items()}


@router.get("/documents/{doc_id}/content", response_class=Response,
            responses={200: {"content": {t.split(";")[0]: {} for t in [*MEDIA_TYPES.values(), "application/octet-stream"]},
                             "description": "the raw file"},
                       206: {"description": "the byte range asked for (Range: bytes=FIRST-LAST, FIRST- or -LAST_N)"},
                       404: {"description": "no raw object has this doc_id"},
                       416: {"description": "the range starts past the end of the file"}})
def document_content(doc_id: str, state: State, store: Store, range_header: str | None = Header(None, alias="range"),
                     if_range: str | None = Header(None)) -> StreamingResponse:
    """Streamed: raw files land in the store at any size (only uploads are capped), and a whole
    1 GB scan in memory could get the API's pod OOM-killed. One byte range is served when asked
    (a PDF viewer's pages, a resumed download); several ranges, or If-Range (this route sends no
    validator to compare), get the whole file."""
    key = None
    try:
        keys = raw_keys_for(store, doc_id, known=state.index and state.index.source_of(doc_id))
        if not keys:
            raise NotFound(doc_id)
        key = keys[0]
        reader = store.reader(key)
    except NotFound:
        raise HTTPException(404, detail=f"no document with doc_id {doc_id} in {RAW_PREFIX} (GET /documents "
                                        "lists them)") from None
    except StoreError as exc:
        raise HTTPException(502, detail=f"could not read from the store: {exc}") from None
    except OSError as exc:  # a file:// store: a symlink loop, a file this user may not read
        raise HTTPException(502, detail=f"could not read {key or RAW_PREFIX} from the store: {exc.strerror}") from None
    name = PurePosixPath(key).name
    media_type = MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")
    headers = {"Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
               "Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
    # The size of what is read (the open file, the GET's object), not of a later listing: a
    # browser shows the download's progress. A file that shrinks meanwhile ends the response early.
    size = reader_size(reader)
    if size is None:
        return StreamingResponse(_blocks(reader, key, None), media_type=media_type, headers=headers)
    headers["Accept-Ranges"] = "bytes"
    span = byte_range(range_header, size) if if_range is None else None
    if span == UNSATISFIABLE:
        reader.close()
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    status, (first, last) = (206, span) if span else (200, (0, size - 1))
    try:
        if first:
            reader.seek(first)
    except (StoreError, OSError) as exc:
        reader.close()
        raise HTTPException(502, detail=f"could not read {key} from the store: {exc}") from None
    headers["Content-Length"] = str(last - first + 1)
    if span:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(_blocks(reader, key, last - first + 1), status_code=status, media_type=media_type,
                             headers=headers)


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
UNSATISFIABLE = (-1, -1)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=…`` header, clipped to the file; None to
    serve the whole file (no header, several ranges, one that makes no sense: RFC 9110 lets a
    server ignore them); UNSATISFIABLE when it starts past the end."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        return (max(size - int(last), 0), size - 1) if int(last) and size else UNSATISFIABLE
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        return UNSATISFIABLE
    return int(first), min(int(last), size - 1) if last else size - 1


def _blocks(reader, key: str, size: int | None) -> Iterator[bytes]:
    """The object in blocks, at most ``size`` bytes (a file appended to meanwhile would overrun
    the Content-Length); the reader is closed when the response ends or the client leaves."""
    left = size
    try:
        with reader:
            for block in read_blocks(reader):
                if left is not None:
                    block = block[:left]
                    left -= len(block)
                if block:
                    yield block
                if left == 0:
                    return
    except (StoreError, OSError) as exc:  # the status is sent: all that is left is to end the response early
        log.warning("serving %s stopped part-way: %s", key, exc)
        raise
