"""Walk many ListObjects variants page by page with boto3; print the pages as JSON.

Usage: boto3_listings.py ENDPOINT BUCKET ACCESS_KEY SECRET_KEY
The differential test runs this against the proxy and against one plain MinIO
bucket holding the same keys, and compares the output.
"""
import json
import sys

import boto3
from botocore.config import Config

endpoint, bucket, access_key, secret_key = sys.argv[1:5]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
    region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)

# Only "" and "/" as delimiters: MinIO repeats a common prefix on every page
# for other delimiters and never gets past it, so it cannot be the reference
# there (the merger's unit tests cover any delimiter against a model).
variants = []
for prefix in ("", "tenant-a/", "tenant-b/blk-1", "u\u00fc", "sp ace/"):
    for delimiter in ("", "/"):
        for max_keys in (7, 400):
            variants.append({"prefix": prefix, "delimiter": delimiter, "max_keys": max_keys})
variants.append({"prefix": "tenant-b/blk-1", "delimiter": "/", "max_keys": 1})
variants.append({"prefix": "tenant-a/", "delimiter": "", "max_keys": 1})
variants.append({"prefix": "", "delimiter": "/", "max_keys": 0})


def entries(page):
    return {
        "keys": [(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])],
        "prefixes": [p["Prefix"] for p in page.get("CommonPrefixes", [])],
        "truncated": page["IsTruncated"],
    }


out = []
for v in variants:
    for version in (1, 2):
        for start_after in (None, "tenant-a/blk-5") if version == 2 else (None,):
            args = {"Bucket": bucket, "Prefix": v["prefix"], "Delimiter": v["delimiter"], "MaxKeys": v["max_keys"]}
            pages = []
            while True:
                if version == 1:
                    page = s3.list_objects(**args)
                    e = entries(page)
                else:
                    if start_after:
                        args["StartAfter"] = start_after
                    page = s3.list_objects_v2(**args)
                    e = entries(page)
                    e["key_count"] = page["KeyCount"]
                pages.append(e)
                if not page["IsTruncated"] or len(pages) > 5000:
                    break
                if version == 1:
                    marker = page.get("NextMarker")
                    if marker is None:
                        last = (e["keys"][-1][0] if e["keys"] else None)
                        marker = max([x for x in [last] + e["prefixes"] if x is not None])
                    args["Marker"] = marker
                else:
                    args["ContinuationToken"] = page["NextContinuationToken"]
            out.append({"variant": dict(v, version=version, start_after=start_after), "pages": pages})

print(json.dumps(out))
