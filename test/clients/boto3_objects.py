"""Object round trips through the proxy with boto3 and its default checksums.

Usage: boto3_objects.py ENDPOINT ACCESS_KEY SECRET_KEY
Prints one JSON line per check; exits non-zero on the first failure.
"""
import hashlib
import io
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, access_key, secret_key = sys.argv[1:4]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
    region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
)
B = "proxy-bucket"


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": detail}), flush=True)
    if not ok:
        sys.exit(1)


for size in (0, 1, 64 * 1024 + 1, 5 * 1024 * 1024):
    key = f"boto/{size}/obj"
    data = os.urandom(size)
    s3.put_object(Bucket=B, Key=key, Body=data, Metadata={"size": str(size)})
    got = s3.get_object(Bucket=B, Key=key)
    body = got["Body"].read()
    check(f"put_object/get_object {size}", body == data, f"{len(body)} bytes")
    check(f"metadata {size}", got["Metadata"].get("size") == str(size))

# upload_fileobj streams an unseekable body: botocore frames it aws-chunked.
data = os.urandom(7 * 1024 * 1024 + 3)


class Unseekable(io.RawIOBase):
    def __init__(self, b):
        self._b = io.BytesIO(b)

    def readable(self):
        return True

    def readinto(self, buf):
        chunk = self._b.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


s3.upload_fileobj(Unseekable(data), B, "boto/stream/obj")
body = s3.get_object(Bucket=B, Key="boto/stream/obj")["Body"].read()
check("upload_fileobj stream", hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), f"{len(body)} bytes")

r = s3.get_object(Bucket=B, Key="boto/stream/obj", Range="bytes=100-199")
check("range", r["Body"].read() == data[100:200] and r["ContentRange"] == f"bytes 100-199/{len(data)}")

try:
    s3.get_object(Bucket=B, Key="boto/missing/obj")
    check("missing key", False)
except ClientError as e:
    check("missing key is NoSuchKey", e.response["Error"]["Code"] == "NoSuchKey", e.response["Error"]["Code"])

s3.put_object_tagging(Bucket=B, Key="boto/1/obj", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
tags = s3.get_object_tagging(Bucket=B, Key="boto/1/obj")["TagSet"]
check("tagging", tags == [{"Key": "k", "Value": "v"}], json.dumps(tags))

for key in ("boto/0/obj", "boto/1/obj", "boto/65537/obj", "boto/5242880/obj", "boto/stream/obj"):
    r = s3.delete_object(Bucket=B, Key=key)
    check(f"delete {key}", r["ResponseMetadata"]["HTTPStatusCode"] == 204)
