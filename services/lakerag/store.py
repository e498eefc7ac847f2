"""Object store over ``file://DIR`` and ``s3://BUCKET[/PREFIX]``, and the one place that says
how Python reaches S3 (``S3Access``: boto3 here, delta-rs storage options, pyarrow's
S3FileSystem in Spark executors, all from the same Settings and AWS environment).

Keys are relative to the store root (``raw/a.pdf``, ``index/CURRENT``). Puts are
atomic per object (temp file + rename locally; S3 PUTs are atomic), which is
what the publish protocol relies on: write the objects, then the pointer.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Self
from urllib.parse import urlparse

from .config import Settings, store_uri_advice

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# S3 parts are at least 5 MiB (but the last); one part per streaming upload is held in memory.
S3_PART_BYTES = 8 * 1024 * 1024
# Local files are written in blocks of at most 1 MiB. On these machines (a VM that hands free
# memory back to its host) a write() of 2 MiB or more into the page cache took whole free 2 MiB
# blocks, the ones handed back, which are slow to touch again; 1 MiB writes use partly used blocks
# first (240 MB: 1.95-2.71 s against 0.06-0.21 s; 2026-12-03, docs/search-latency.md). Smaller writes
# cost nothing measurable elsewhere.
WRITE_BLOCK_BYTES = 1024 * 1024
# Objects are read by other processes of the deployment (the chart runs them under one group).
PUBLISHED_MODE = 0o644


class StoreError(RuntimeError):
    """The store cannot be reached or the key is invalid; the message says why."""


class ConditionalWritesUnsupported(StoreError):
    """The S3 server refuses If-None-Match / If-Match writes (older S3-compatible servers)."""


class NotFound(StoreError, KeyError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # Changes whenever the object's bytes may have changed (S3 ETag, or size+mtime locally).
    version: str


def check_key(key: str) -> str:
    """Reject keys that could escape the root or are not plain relative paths."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise StoreError(f"invalid object key {key!r}")
    parts = key.split("/")
    if any(p in {"..", "."} for p in parts[:-1]) or parts[-1] in {"..", "."}:
        raise StoreError(f"object key {key!r} must not contain '.' or '..' path segments")
    return key


def reader_size(reader) -> int | None:
    """How many bytes a reader from ``store.reader(key)`` gives (None: unknown)."""
    if isinstance(reader, S3Reader):
        return reader.size
    return os.fstat(reader.fileno()).st_size


def read_blocks(reader) -> Iterator[bytes]:
    """A binary reader's bytes in ``WRITE_BLOCK_BYTES`` pieces: at most that much of a streamed copy
    is in memory at once."""
    while block := reader.read(WRITE_BLOCK_BYTES):
        yield block


def reader_sha256(reader) -> str:
    """The SHA-256 hex digest of what a reader from ``store.reader(key)`` gives, read in blocks."""
    digest = hashlib.sha256()
    for block in read_blocks(reader):
        digest.update(block)
    return digest.hexdigest()


def same_bytes(store, key: str, size: int, sha256: str) -> bool | None:
    """Whether ``key`` holds exactly the bytes of this size and SHA-256 hex digest; None when
    there is no ``key``. Its bytes are read only when its size matches."""
    try:
        with store.reader(key) as reader:
            return reader_size(reader) in (None, size) and reader_sha256(reader) == sha256
    except NotFound:
        return None


def write_blocks(handle, data) -> None:
    """Write ``data`` to a binary file in ``WRITE_BLOCK_BYTES`` pieces (see there why)."""
    view = memoryview(data)
    for start in range(0, len(view), WRITE_BLOCK_BYTES):
        handle.write(view[start:start + WRITE_BLOCK_BYTES])


class LocalStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.uri = f"file://{self.root}"
        if self.root.exists() and not self.root.is_dir():  # else every read fails with "Not a directory"
            raise StoreError(f"store {self.uri} is a file, not a directory: point LAKERAG_STORE_URI at a directory "
                             "(file://DIR; it is created when missing)")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.exists() or not start.is_relative_to(self.root):  # no root yet: never walk its parent
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or ".lakerag-tmp" in name:
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed by a concurrent writer since the walk saw it
                    continue
                except OSError:  # a symlink loop, a file this user may not stat: listed, so reading it fails
                    try:         # into quarantine with the reason instead of failing the whole listing
                        stat = path.lstat()
                    except OSError:
                        continue
                else:
                    if not S_ISREG(stat.st_mode):  # a pipe or socket: no object, and reading one can block
                        continue
                yield ObjectInfo(key, stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}")

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None

    def reader(self, key: str):
        """A streaming get: a binary file to ``read(n)`` from, closed by ``with``."""
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFound(key) from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".lakerag-tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                write_blocks(handle, data)
            os.chmod(tmp, PUBLISHED_MODE)  # mkstemp makes 0600; readers run as other users of the group
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def writer(self, key: str) -> LocalWriter:
        """A streaming put: bytes go to a temp file beside the key; commit() renames it into place."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return LocalWriter(path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url(self, key: str) -> str:
        """Location of a key for other readers (delta-rs, Spark)."""
        return str(self.root / key)


class LocalWriter:
    def __init__(self, path: Path):
        self.path = path
        fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".lakerag-tmp")
        self.handle = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        write_blocks(self.handle, data)
        self.size += len(data)

    def commit(self) -> None:
        self.handle.close()
        os.chmod(self.tmp, PUBLISHED_MODE)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.handle.close()
        Path(self.tmp).unlink(missing_ok=True)


class S3Writer:
    """A streaming put as an S3 multipart upload: at most one part is held in memory."""

    def __init__(self, store: S3Store, key: str):
        self.store, self.key = store, store._key(key)
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.upload_id: str | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.size += len(data)
        if len(self.buffer) >= S3_PART_BYTES:
            self._flush()

    def _flush(self) -> None:
        client, bucket = self.store.client, self.store.bucket
        if self.upload_id is None:
            self.upload_id = self.store._call(client.create_multipart_upload, Bucket=bucket, Key=self.key)["UploadId"]
        number = len(self.parts) + 1
        etag = self.store._call(client.upload_part, Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                                PartNumber=number, Body=bytes(self.buffer))["ETag"]
        self.parts.append({"ETag": etag, "PartNumber": number})
        self.buffer = bytearray()

    def commit(self) -> None:
        client, bucket = self.store.client, self.store.bucket
        if self.upload_id is None:  # small object: one PUT
            self.store._call(client.put_object, Bucket=bucket, Key=self.key, Body=bytes(self.buffer))
            return
        if self.buffer:
            self._flush()
        self.store._call(client.complete_multipart_upload, Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                         MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is not None:
            try:
                self.store._call(self.store.client.abort_multipart_upload, Bucket=self.store.bucket, Key=self.key,
                                 UploadId=self.upload_id)
            except StoreError:
                pass  # the bucket's lifecycle rule for incomplete uploads cleans up


class S3Reader:
    """A streaming get: the object's body, read as it arrives; a failure mid-stream is a StoreError."""

    def __init__(self, store: S3Store, key: str, response: dict):
        self.store, self.key, self.body = store, key, response["Body"]
        self.size, self.etag = response.get("ContentLength"), response.get("ETag")

    def read(self, size: int = -1) -> bytes:
        return self.store._call(self.body.read, size if size >= 0 else None)

    def seek(self, offset: int) -> None:
        """Read on from byte ``offset``: a ranged GET of the same object (If-Match its ETag), as a
        file's seek; a changed object is a StoreError, not a mix of two versions."""
        self.body.close()
        extra = {"IfMatch": self.etag} if self.etag else {}
        self.body = self.store._call(self.store.client.get_object, Bucket=self.store.bucket,
                                     Key=self.store._key(self.key), Range=f"bytes={offset}-", **extra)["Body"]

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class S3Access:
    """Endpoint, region and the credentials given as environment variables. Empty credentials
    leave boto3 and delta-rs to the AWS chain (profile, IRSA); pyarrow gets the same values."""

    endpoint_url: str = ""
    region: str = ""
    credentials: tuple[tuple[str, str], ...] = ()  # (AWS_* variable, value), only those set

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Access:
        return cls(settings.aws_endpoint_url, settings.aws_region,
                   tuple((name, os.environ[name]) for name in CREDENTIAL_VARS if os.environ.get(name)))

    @classmethod
    def from_delta_options(cls, options: dict[str, str]) -> S3Access:
        """The access that ``delta_options`` described (what executors carry in a picklable dict)."""
        return cls(options.get("AWS_ENDPOINT_URL", ""), options.get("AWS_REGION", ""),
                   tuple((name, options[name]) for name in CREDENTIAL_VARS if options.get(name)))

    def boto3_client(self):
        # Imported here: a file:// store (make run, tests) starts without boto3's ~0.1-0.3 s import.
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url or None, region_name=self.region or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60))

    def delta_options(self) -> dict[str, str]:
        """Storage options for delta-rs."""
        options = {
            # One writer per table at a time (the DAG runs one pipeline at a time), so
            # delta-rs may commit on S3 without an external lock provider.
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        }
        if self.region:
            options["AWS_REGION"] = self.region
        if self.endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        options.update(self.credentials)
        return options

    def arrow_filesystem(self):
        """pyarrow's S3 file system (Spark executors read Delta snapshot files with it)."""
        from pyarrow.fs import S3FileSystem  # jobs only: the API carries no pyarrow

        given = dict(self.credentials)
        return S3FileSystem(access_key=given.get("AWS_ACCESS_KEY_ID"), secret_key=given.get("AWS_SECRET_ACCESS_KEY"),
                            session_token=given.get("AWS_SESSION_TOKEN"), region=self.region or None,
                            endpoint_override=self.endpoint_url or None,
                            scheme="http" if self.endpoint_url.startswith("http://") else "https")

    def environment(self) -> dict[str, str]:
        """The credentials as environment variables, for processes that may lack them
        (local-mode Spark workers can start before the driver's environment was set)."""
        return dict(self.credentials)


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", access: S3Access | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.access = access or S3Access()
        self.endpoint_url = self.access.endpoint_url or None
        self.client = self.access.boto3_client()

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _call(self, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise NotFound(kwargs.get("Key", "")) from None
            raise StoreError(f"S3 {code or 'error'} on s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable ({self.endpoint_url or 'AWS'}): {exc}") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        full_prefix = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        pages = self._call(lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full_prefix)))
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):  # a "folder" (S3 console, s3a, pyarrow): no file, no document
                    continue
                yield ObjectInfo(self._rel(obj["Key"]), obj["Size"], obj["ETag"].strip('"'))

    def get(self, key: str) -> bytes:
        return self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def reader(self, key: str) -> S3Reader:
        return S3Reader(self, key, self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(key)))

    def put(self, key: str, data: bytes) -> None:
        self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        return self.etag(key) is not None

    def etag(self, key: str) -> str | None:
        """The object's ETag, or None when there is none."""
        try:
            return self._call(self.client.head_object, Bucket=self.bucket, Key=self._key(key))["ETag"]
        except NotFound:
            return None

    # Conditional writes (S3 since 2024; MinIO, moto): what a lease across hosts needs.

    def create(self, key: str, data: bytes) -> str | None:
        """Write ``key`` only if no object is there; its ETag, or None when one is."""
        return self._write_if(key, data, IfNoneMatch="*")

    def replace_if(self, key: str, data: bytes, etag: str) -> str | None:
        """Overwrite ``key`` only while its ETag is ``etag``; the new ETag, or None when it changed or is gone."""
        return self._write_if(key, data, IfMatch=etag)

    def _write_if(self, key: str, data: bytes, **condition) -> str | None:
        try:
            return self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data,
                              **condition)["ETag"]
        except NotFound:  # IfMatch on a key that is gone
            return None
        except StoreError as exc:
            code = getattr(exc.__cause__, "response", {}).get("Error", {}).get("Code", "")
            if code in {"PreconditionFailed", "ConditionalRequestConflict"}:  # the condition did not hold
                return None
            if code in {"NotImplemented", "InvalidArgument"}:
                raise ConditionalWritesUnsupported(f"{self.uri} does not support conditional writes: {exc}") from exc
            raise

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


ObjectStore = LocalStore | S3Store


def store_for(settings: Settings) -> ObjectStore:
    """The store LAKERAG_STORE_URI names, reached as the settings say."""
    return open_store(settings.store_uri, access=S3Access.from_settings(settings))


def open_store(uri: str, endpoint_url: str = "", region: str = "", access: S3Access | None = None) -> ObjectStore:
    """Open ``file://DIR`` (relative paths allowed: ``file://./local_data``) or ``s3://BUCKET/PREFIX``;
    for S3, ``access`` (or else ``endpoint_url``/``region`` and the AWS chain) says how."""
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://"):] or ".")
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StoreError(f"{uri!r} has no bucket name")
        return S3Store(parsed.netloc, posixpath.normpath(parsed.path).strip("/.") if parsed.path else "",
                       access or S3Access(endpoint_url, region))
    raise StoreError(f"unsupported store URI {uri!r}: {store_uri_advice(uri)}")
