"""POST/GET/DELETE /documents: the user's files in raw/ and where each one is in the pipeline."""

from __future__ import annotations

import logging
import unicodedata
from pathlib import PurePosixPath

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ...extract import FILE_TYPES
from ...lake import DOCUMENTS_KEY, RAW_PREFIX, doc_id_for, raw_documents, raw_keys_for
from ...store import StoreError, same_bytes
from ...volume import VOLUME_FULL_ERRNOS
from ..deps import ApiKey, State, Store
from ..schemas import DocumentDeleted, DocumentList, DocumentState, DocumentUploaded
from ..uploads import HashingWriter, UploadError, boundary_of, check_declared_length, stream_file

log = logging.getLogger(__name__)
router = APIRouter(tags=["documents"])

ALLOWED_EXTENSIONS = tuple(FILE_TYPES)  # what the pipeline extracts, no more
MAX_NAME_BYTES = 200  # UTF-8: file systems cap a name at 255 bytes, not characters
QUOTES = set("\"'`")


def safe_name(filename: str | None) -> str:
    """The file name as an object key under raw/: no directories, no '..', no control
    characters, NFC; other Unicode is kept. Raises ValueError with the reason."""
    name = unicodedata.normalize("NFC", filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Control/format characters (CR/LF...) and quotes: a key must be safe to echo in logs, headers and shells.
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ch not in QUOTES)
    name = name.strip().lstrip(".").strip()  # no hidden files, no "..": the dots of ".." go too
    if not name:
        raise ValueError(f"file name {filename!r} has nothing usable left after removing path parts; "
                         "upload it under a plain name like report.pdf")
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        if not dot or len(suffix) > 10:  # no extension (the type check refuses such a name anyway)
            stem, dot, suffix = name, "", ""
        budget = MAX_NAME_BYTES - len((dot + suffix).encode())
        name = stem.encode()[:budget].decode("utf-8", "ignore") + dot + suffix  # cut on a character boundary
    return name


def _store_failure(exc: Exception) -> str:
    """Why the store failed, without the server's own paths (an OSError names the file)."""
    return (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else str(exc)


def _write_failed(key: str, exc: Exception) -> HTTPException:
    """507 when the store's volume is full (or over a quota or size limit), else 502."""
    full = isinstance(exc, OSError) and exc.errno in VOLUME_FULL_ERRNOS
    return HTTPException(507 if full else 502, detail=f"could not write {key} to the store: {_store_failure(exc)}")


def _extension_ok(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in ALLOWED_EXTENSIONS


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "the document"}}}}}}}


@router.post("/documents", status_code=201, response_model=DocumentUploaded, dependencies=[ApiKey],
             openapi_extra=UPLOAD_BODY,
             responses={200: {"model": DocumentUploaded, "description": "the same bytes are already stored under "
                              "this name (unchanged): nothing was written and no pipeline run is asked for"},
                        400: {"description": "unusable file name, empty file or malformed multipart body"},
                        401: {"description": "X-API-Key missing"}, 403: {"description": "X-API-Key wrong"},
                        413: {"description": "file too large"},
                        415: {"description": "file type not accepted, or the body is not multipart/form-data"},
                        422: {"description": "no 'file' field in the form"},
                        502: {"description": "the store cannot be written"},
                        507: {"description": "the store's volume is full; what was stored is kept"}})
async def upload(request: Request, response: Response, state: State, store: Store) -> DocumentUploaded:
    """The API key (a dependency) and the declared length are checked before any of the body is
    read; the file then streams to the store (uploads.py), never whole in memory or on local disk."""
    limit = state.settings.max_upload_bytes
    found: dict = {}

    def open_writer(filename: str):
        try:
            name = safe_name(filename)
        except ValueError as exc:
            raise UploadError(400, str(exc)) from None
        if not _extension_ok(name):
            raise UploadError(415, f"{name!r}: only {', '.join(ALLOWED_EXTENSIONS)} files are accepted")
        found["key"] = key = RAW_PREFIX + name
        try:
            return HashingWriter(store.writer(key))
        except (StoreError, OSError) as exc:
            failed = _write_failed(key, exc)
            raise UploadError(failed.status_code, failed.detail) from None

    try:
        check_declared_length(request.headers.get("content-length"), limit)
        writer, size = await stream_file(request.stream(), boundary_of(request.headers.get("content-type")), limit,
                                         open_writer)
    except UploadError as exc:
        if exc.status == 422:
            raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": exc.detail,
                                           "input": None}]) from None
        raise HTTPException(exc.status, detail=exc.detail) from None
    except ClientDisconnect:
        raise HTTPException(400, detail="the client closed the connection before the upload finished") from None
    except (StoreError, OSError) as exc:  # writing the file's bytes (stream_file aborted the writer)
        raise _write_failed(found["key"], exc) from None
    key = found["key"]
    if not size:
        await run_in_threadpool(writer.abort)
        raise HTTPException(400, detail=f"{key.removeprefix(RAW_PREFIX)!r} is empty")

    def commit() -> bool | None:
        """Write the upload unless the key holds these bytes already; store.same_bytes's answer."""
        same = same_bytes(store, key, size, writer.sha256.hexdigest())
        if same:  # a retry, a second click: writing would only make a new version for the pipeline to read
            writer.abort()
        else:
            writer.commit()
        return same

    try:
        same = await run_in_threadpool(commit)
    except (StoreError, OSError) as exc:
        await run_in_threadpool(writer.abort)
        raise _write_failed(key, exc) from None
    if same:
        log.info("upload of %s: the same %d bytes are already stored; nothing written", key, size)
        response.status_code = 200
        return DocumentUploaded(key=key, doc_id=doc_id_for(key), size=size, replaced=False, unchanged=True,
                                note=f"unchanged: {key} already holds these bytes, so nothing was written "
                                     "(GET /documents says whether it is indexed)")
    replaced = same is False
    state.metrics.upload_bytes.inc(size)
    log.info("uploaded %s (%d bytes%s)", key, size, ", replacing the previous file" if replaced else "")
    return DocumentUploaded(key=key, doc_id=doc_id_for(key), size=size, replaced=replaced,
                            note="stored; {runner} indexes it{when}".format(**_ask_for_run(state, f"uploaded {key}")))


@router.get("/documents", response_model=DocumentList)
def list_documents(state: State) -> DocumentList:
    """Each raw file's state: from the store's listing, the status the last ETL run wrote
    (``lake/_runs/documents.json``; no Delta read here) and the served index."""
    try:
        raw = list(raw_documents(state.lake.store))
    except StoreError as exc:
        raise HTTPException(502, detail=f"cannot list {RAW_PREFIX} in the store: {exc}") from None
    try:
        status = state.lake.read_document_status() or {}
        landed = {tuple(pair) for pair in status.get("extracted", [])}
        reasons = {(key, version): reason for key, version, reason in status.get("quarantined", [])}
        gold = {doc_id: dict(entry) for doc_id, entry in status.get("documents", {}).items()}
        copies = dict(status.get("duplicates", {}))  # key -> the key of the same content that is kept
    except (StoreError, ValueError, TypeError, AttributeError) as exc:  # unreadable, or not the shape written
        raise HTTPException(502, detail=f"cannot read the pipeline's document status ({DOCUMENTS_KEY}): {exc}; "
                                        "the next pipeline run (`lakerag pipeline run`) writes it again") from None
    index = state.index
    indexed = index.chunks_per_document() if index is not None else {}

    documents = []
    for obj in raw:
        doc_id = doc_id_for(obj.key)
        version = (obj.key, obj.version)
        entry = {"key": obj.key, "doc_id": doc_id, "size": obj.size, "title": gold.get(doc_id, {}).get("title")}
        if version in reasons:
            entry.update(state="quarantined", reason=reasons[version])
        elif doc_id in indexed and not status:  # a lake last processed before document status was written
            entry.update(state="indexed", chunks=int(indexed[doc_id]))
        elif version not in landed:
            entry.update(state="landed", reason="waiting for the next pipeline run")
        elif doc_id in indexed:
            entry.update(state="indexed", chunks=int(indexed[doc_id]))
        elif obj.key in copies:
            entry.update(state="processed", chunks=0,
                         reason=f"the same content as {copies[obj.key]}, which is indexed in its place")
        else:
            chunks = int(gold.get(doc_id, {}).get("chunks", 0))
            entry.update(state="processed", chunks=chunks,
                         reason="extracted; not in the served index yet" if chunks
                         else "extracted, but no chunks (empty text, or a duplicate of another file)")
        documents.append(DocumentState(**entry))
    counts: dict[str, int] = {}
    for doc in documents:
        counts[doc.state] = counts.get(doc.state, 0) + 1
    return DocumentList(documents=documents, counts=counts, index_version=index.version if index else None)


@router.delete("/documents/{doc_id}", response_model=DocumentDeleted, dependencies=[ApiKey],
               responses={404: {"description": "no raw object has this doc_id"}})
def delete_document(doc_id: str, state: State, store: Store) -> DocumentDeleted:
    try:
        keys = raw_keys_for(store, doc_id, known=state.index and state.index.source_of(doc_id))
    except StoreError as exc:
        raise HTTPException(502, detail=f"could not list {RAW_PREFIX} in the store: {exc}") from None
    if not keys:
        raise HTTPException(404, detail=f"no document with doc_id {doc_id} in {RAW_PREFIX} (GET /documents lists them)")
    for key in keys:
        try:
            store.delete(key)
        except (StoreError, OSError) as exc:  # a file:// store raises OSError: read-only, not this user's
            raise HTTPException(502, detail=f"could not delete {key} from the store: {_store_failure(exc)}") from None
    log.info("deleted %s", ", ".join(keys))
    return DocumentDeleted(key=keys[0], doc_id=doc_id, deleted=True,
                           note="removed from raw/; {runner} removes its chunks and vectors{when}".format(
                               **_ask_for_run(state, f"deleted {', '.join(keys)}")))


def _ask_for_run(state, change: str) -> dict[str, str]:
    """Ask Airflow for a pipeline run (in the background; never fails the request) when configured;
    who will act on the change, for the response's note."""
    if state.trigger is not None:
        state.trigger.notify(change)
        return {"runner": "the pipeline run requested from Airflow now", "when": ""}
    if state.raw_watched:
        return {"runner": "this server's pipeline watcher (`lakerag run`)", "when": " within seconds"}
    return {"runner": "the next pipeline run (`lakerag pipeline run`)", "when": ""}
