"""Managed multipart transfers through the proxy with boto3's TransferConfig.

Usage: boto3_multipart.py ENDPOINT ACCESS_KEY SECRET_KEY WORKDIR
Prints one JSON line per check ({"check", "ok", "detail"}) and one per stored
object ({"object", "size", "parts"}); exits non-zero on the first failure.
"""
import hashlib
import io
import json
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access_key, secret_key, workdir = sys.argv[1:5]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
    region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
)
B = "proxy-bucket"
MiB = 1024 * 1024
config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": detail}), flush=True)
    if not ok:
        sys.exit(1)


def write_random(path, size):
    """Writes `size` random bytes in 1 MiB chunks; returns their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(MiB, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


class Unseekable(io.RawIOBase):
    def __init__(self, f):
        self._f = f

    def readable(self):
        return True

    def readinto(self, buf):
        chunk = self._f.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(key, size, want_sha, parts):
    head = s3.head_object(Bucket=B, Key=key)
    check(f"{key} size", head["ContentLength"] == size, str(head["ContentLength"]))
    etag = head["ETag"]
    check(f"{key} stored in {parts} parts", etag.endswith(f'-{parts}"'), etag)
    # download_fileobj fetches ranges on several threads and seeks to write
    # them, so the download lands in a file that is hashed afterwards.
    out = os.path.join(workdir, "down")
    with open(out, "wb") as f:
        s3.download_fileobj(B, key, f, Config=config)
    check(f"{key} download_fileobj sha256", file_sha(out) == want_sha, want_sha)
    os.remove(out)
    print(json.dumps({"object": key, "size": size, "parts": parts}), flush=True)


# 5 MiB x 3 + a small tail from a file, then the same bytes as an unseekable
# stream (its size unknown until read to the end), then 100 MiB from an open
# file.
tail = 5 * MiB * 3 + 4321
path = os.path.join(workdir, "tail")
digest = write_random(path, tail)
s3.upload_file(path, B, "tenant/boto-mpu-file/data.parquet", Config=config)
verify("tenant/boto-mpu-file/data.parquet", tail, digest, 4)

with open(path, "rb") as f:
    s3.upload_fileobj(Unseekable(f), B, "tenant/boto-mpu-stream/data.parquet", Config=config)
verify("tenant/boto-mpu-stream/data.parquet", tail, digest, 4)
os.remove(path)

big = 100 * MiB
path = os.path.join(workdir, "big")
digest = write_random(path, big)
with open(path, "rb") as f:
    s3.upload_fileobj(f, B, "tenant/boto-mpu-big/data.parquet", Config=config)
os.remove(path)
verify("tenant/boto-mpu-big/data.parquet", big, digest, 20)

uploads = s3.list_multipart_uploads(Bucket=B).get("Uploads", [])
check("no upload left open", uploads == [], json.dumps([u["Key"] for u in uploads]))
