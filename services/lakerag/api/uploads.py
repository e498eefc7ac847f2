"""POST /documents' body, streamed: the multipart body is parsed as it arrives and the file
part is written straight to the store (a temp file beside the key, or one S3 part in
memory), so neither memory nor local disk grows with the upload, and nothing is read
before the API key and the declared length have been checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

# Bytes handed to the store's writer per thread hop; the request's own chunks are ~64 KiB.
WRITE_BLOCK = 1 << 20
# Multipart framing around the file (boundaries, part headers with a long name) on top of the file limit.
FRAMING_BYTES = 16 * 1024


class UploadError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HashingWriter:
    """A store writer that also hashes what it writes: an upload of the bytes already stored is
    told apart before it is committed."""

    def __init__(self, writer):
        self.writer, self.sha256 = writer, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.writer.write(data)

    def commit(self) -> None:
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()


class _FilePart:
    """Callbacks of python-multipart's push parser: finds the ``file`` part and collects its bytes."""

    def __init__(self):
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.in_file = False
        self.filename: str | None = None
        self.seen_file = False
        self.file_ended = False  # its closing boundary arrived: the body was not cut short inside it
        self.second_file = False  # a request stores one file: a second is refused, not dropped
        self.pending: list[bytes] = []

    def on_part_begin(self):
        self.disposition = b""
        self.in_file = False

    def on_header_field(self, data, start, end):
        self.header_name += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self):
        _, options = parse_options_header(self.disposition)
        if options.get(b"name") != b"file":
            return
        if self.seen_file:
            self.second_file = True
            return
        self.in_file = self.seen_file = True
        self.filename = options.get(b"filename", b"").decode("utf-8", "replace")

    def on_part_data(self, data, start, end):
        if self.in_file:
            self.pending.append(bytes(data[start:end]))

    def on_part_end(self):
        self.file_ended = self.file_ended or self.in_file
        self.in_file = False

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in ("on_part_begin", "on_header_field", "on_header_value",
                                                       "on_header_end", "on_headers_finished", "on_part_data",
                                                       "on_part_end")}


def check_declared_length(content_length: str | None, limit: int) -> None:
    """413 from the header alone, before a byte of the body is read."""
    if content_length and content_length.isdigit() and int(content_length) > limit + FRAMING_BYTES:
        raise UploadError(413, f"the request is {content_length} bytes, over the upload limit of {limit} bytes "
                               "(LAKERAG_MAX_UPLOAD_BYTES)")


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(415, "send the file as multipart/form-data with a field named 'file' "
                               "(curl -F file=@report.pdf ...)")
    return options[b"boundary"]


async def stream_file(chunks: AsyncIterator[bytes], boundary: bytes, limit: int,
                      open_writer: Callable[[str], object]) -> tuple[object, int]:
    """Parse the body; once the file part's headers arrive, ``open_writer(filename)`` (which may
    raise UploadError for a bad name or type) gives the sink. Returns (writer, size), uncommitted."""
    part = _FilePart()
    parser = MultipartParser(boundary, part.callbacks())
    writer = None
    size = 0
    block: list[bytes] = []
    block_bytes = 0
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise UploadError(400, f"malformed multipart body: {exc}") from None
            if part.second_file:
                raise UploadError(400, "one file per request: send each file in its own POST /documents "
                                       "(nothing of this request was stored)")
            if part.seen_file and writer is None:
                writer = await run_in_threadpool(open_writer, part.filename or "")
            for data in part.pending:
                size += len(data)
                if size > limit:
                    raise UploadError(413, f"the file is larger than the upload limit of {limit} bytes "
                                           "(LAKERAG_MAX_UPLOAD_BYTES)")
                block.append(data)
                block_bytes += len(data)
            part.pending.clear()
            if block_bytes >= WRITE_BLOCK:
                await run_in_threadpool(writer.write, b"".join(block))
                block, block_bytes = [], 0
        try:
            parser.finalize()
        except FormParserError as exc:
            raise UploadError(400, f"malformed multipart body: {exc}") from None
        if writer is None:
            raise UploadError(422, "the form has no field named 'file' with a file in it")
        if not part.file_ended:  # python-multipart's finalize() does not check that the body is complete
            raise UploadError(400, "the body ended inside the file part, before its closing boundary: the "
                                   "upload was cut short, and nothing was stored; send the file again")
        if block:
            await run_in_threadpool(writer.write, b"".join(block))
        return writer, size
    except BaseException:
        if writer is not None:
            await run_in_threadpool(writer.abort)
        raise
