#!/usr/bin/env bash
# `make demo`: a local MinIO with three shard buckets and the proxy on
# 127.0.0.1:8080, both stopped with Ctrl-C. Data lives under $TSS_CACHE/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
TSS_CACHE=${TSS_CACHE:-$HOME/.cache/tempo-s3-shard}
MINIO_BIN=${MINIO_BIN:-$TSS_CACHE/bin/minio}
DATA=$TSS_CACHE/demo
MINIO_PORT=${MINIO_PORT:-9000}
PROXY_PORT=${PROXY_PORT:-8080}
export MINIO_ROOT_USER=demo-admin MINIO_ROOT_PASSWORD=demo-secret-key
mkdir -p "$DATA/minio"

"$MINIO_BIN" server "$DATA/minio" --quiet --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$((MINIO_PORT + 1))" &
minio_pid=$!
# On Ctrl-C MinIO has gone already: neither step may turn the exit into an error.
trap 'kill $minio_pid 2>/dev/null || true; wait $minio_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$MINIO_PORT/minio/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

cat > "$DATA/config.json" <<JSON
{
  "listen_addr": "127.0.0.1:$PROXY_PORT",
  "endpoint": "http://127.0.0.1:$MINIO_PORT",
  "access_key_id": "$MINIO_ROOT_USER",
  "secret_access_key": "$MINIO_ROOT_PASSWORD",
  "region": "us-east-1",
  "virtual_bucket": "proxy-bucket",
  "buckets": ["shard1", "shard2", "shard3"]
}
JSON

node bin/tempo-s3-shard --config "$DATA/config.json" &
proxy_pid=$!
trap 'kill $proxy_pid $minio_pid 2>/dev/null || true; wait $proxy_pid $minio_pid 2>/dev/null || true' EXIT
# The commands below are for pasting: print them once the proxy answers.
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$PROXY_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 $proxy_pid 2>/dev/null || exit 1
  sleep 0.1
done

# `make deps` installs the AWS CLI into its own virtualenv, which is on make's
# PATH but not on the user's: the printed command names it in full.
aws_cli=$(command -v aws || echo aws)

cat <<MSG

tempo-s3-shard demo
  proxy:   http://127.0.0.1:$PROXY_PORT   virtual bucket: proxy-bucket
  backend: MinIO http://127.0.0.1:$MINIO_PORT   buckets shard1, shard2, shard3
  credentials: $MINIO_ROOT_USER / $MINIO_ROOT_PASSWORD (the proxy accepts any client: no 'clients' configured)

Point a client at it, for example:
  AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD \\
    $aws_cli --endpoint-url http://127.0.0.1:$PROXY_PORT s3 cp README.md s3://proxy-bucket/tenant/block/README.md
  node bin/tempo-s3-shard locate --config $DATA/config.json tenant/block/README.md
Ctrl-C stops the proxy and MinIO.

MSG
# Ctrl-C ends the demo, with success; the EXIT trap stops both.
trap 'exit 0' INT TERM
wait $proxy_pid
