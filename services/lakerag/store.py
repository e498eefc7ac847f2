"""Object store over ``file://DIR`` and ``s3://BUCKET[/PREFIX]``.

Keys are relative to the store root (``raw/a.pdf``, ``index/CURRENT``). Puts are
atomic per object (temp file + rename locally; S3 PUTs are atomic), which is
what the publish protocol relies on: write the objects, then the pointer.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# S3 parts are at least 5 MiB (but the last); one part per streaming upload is held in memory.
S3_PART_BYTES = 8 * 1024 * 1024
# Objects are read by other processes of the deployment (the chart runs them under one group).
PUBLISHED_MODE = 0o644


class StoreError(RuntimeError):
    """The store cannot be reached or the key is invalid; the message says why."""


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


class LocalStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.uri = f"file://{self.root}"

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
                yield ObjectInfo(key, stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}")

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".lakerag-tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
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
        self.handle.write(data)
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


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str = "", region: str = ""):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )

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
                yield ObjectInfo(self._rel(obj["Key"]), obj["Size"], obj["ETag"].strip('"'))

    def get(self, key: str) -> bytes:
        return self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except NotFound:
            return False

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


ObjectStore = LocalStore | S3Store


def open_store(uri: str, endpoint_url: str = "", region: str = "") -> ObjectStore:
    """Open ``file://DIR`` (relative paths allowed: ``file://./local_data``) or ``s3://BUCKET/PREFIX``."""
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://"):] or ".")
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StoreError(f"{uri!r} has no bucket name")
        return S3Store(parsed.netloc, posixpath.normpath(parsed.path).strip("/.") if parsed.path else "",
                       endpoint_url=endpoint_url, region=region)
    raise StoreError(f"unsupported store URI {uri!r}: use file://DIR or s3://BUCKET[/PREFIX]")
