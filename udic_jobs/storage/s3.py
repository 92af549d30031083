"""Blob storage in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto's server...), through boto3.

Chosen by ``UDIC_STORAGE_URL=s3://bucket/prefix``. The endpoint is ``UDIC_S3_ENDPOINT_URL`` (or
boto3's own ``AWS_ENDPOINT_URL``; AWS itself when neither is set); credentials and region come from
boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``~/.aws``, instance roles). A PUT of one object is atomic in S3, so no temp objects are needed.
With a custom endpoint, path-style addressing is used (what MinIO and moto expect).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from udic_jobs.storage.base import BlobInfo, StorageError, check_key

_MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"); StorageError for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"UDIC_STORAGE_URL {url!r}: expected s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


class S3Storage:
    def __init__(self, url: str, endpoint_url: str | None = None, client: Any = None):
        self.bucket, self.prefix = parse_s3_url(url)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 4, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url or None, config=config)

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def get(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise KeyError(key) from None
            raise
        body: bytes = obj["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        for page in pages:
            for obj in page.get("Contents", []):
                yield BlobInfo(self._key(obj["Key"]), obj["LastModified"].timestamp(), int(obj["Size"]))

    def ping(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except (ClientError, BotoCoreError):
            return False


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
