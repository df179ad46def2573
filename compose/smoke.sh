#!/usr/bin/env bash
# Manual smoke test of a running tempo-s3-shard, with the AWS CLI: puts a few
# objects through the proxy, lists them in the virtual bucket, reads one back,
# then lists every shard bucket directly on the backend to show where they
# landed, and deletes them again.
#
# The defaults fit the compose stack with the MinIO overlay:
#   bash compose/smoke.sh
# Anything else through the environment, for example:
#   PROXY_ENDPOINT=http://tss.internal:8080 PROXY_ACCESS_KEY_ID=tempo PROXY_SECRET_ACCESS_KEY=... \
#   VIRTUAL_BUCKET=tempo SHARD_BUCKETS="tempo-shard1 tempo-shard2 tempo-shard3" \
#   S3_ENDPOINT=https://s3.example.com S3_ACCESS_KEY_ID=... S3_SECRET_ACCESS_KEY=... \
#     bash compose/smoke.sh
set -euo pipefail

PROXY_ENDPOINT=${PROXY_ENDPOINT:-http://127.0.0.1:8080}
PROXY_ACCESS_KEY_ID=${PROXY_ACCESS_KEY_ID:-tempo}
PROXY_SECRET_ACCESS_KEY=${PROXY_SECRET_ACCESS_KEY:-tempo-local-client-secret}
VIRTUAL_BUCKET=${VIRTUAL_BUCKET:-tempo}
SHARD_BUCKETS=${SHARD_BUCKETS:-tempo-shard1 tempo-shard2 tempo-shard3}
S3_ENDPOINT=${S3_ENDPOINT:-http://127.0.0.1:9000}
S3_ACCESS_KEY_ID=${S3_ACCESS_KEY_ID:-tss-local-admin}
S3_SECRET_ACCESS_KEY=${S3_SECRET_ACCESS_KEY:-tss-local-secret-key}
S3_REGION=${S3_REGION:-us-east-1}
OBJECTS=${OBJECTS:-12}

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v aws >/dev/null || fail "the AWS CLI (aws) is not on PATH"

# Clients sign for the proxy; the shard buckets are read with the backend's own credentials.
proxy() {
  env -u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID="$PROXY_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$PROXY_SECRET_ACCESS_KEY" \
    aws --region "$S3_REGION" --endpoint-url "$PROXY_ENDPOINT" "$@"
}
backend() {
  env -u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$S3_SECRET_ACCESS_KEY" \
    aws --region "$S3_REGION" --endpoint-url "$S3_ENDPOINT" "$@"
}
# Number of keys under a prefix; an empty listing has no Contents at all.
# shellcheck disable=SC2016 # `[]` is a JMESPath literal, not a command substitution
count() {
  "$1" s3api list-objects-v2 --bucket "$2" --prefix "$3" --query 'length(Contents || `[]`)' --output text
}

run="smoke-$(date +%Y%m%d%H%M%S)-$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== buckets the proxy presents at $PROXY_ENDPOINT"
proxy s3api list-buckets --query 'Buckets[].Name' --output text

echo "== putting $OBJECTS objects into $VIRTUAL_BUCKET/$run/"
for i in $(seq 1 "$OBJECTS"); do
  printf '{"block":%d}\n' "$i" >"$tmp/meta.json"
  proxy s3api put-object --bucket "$VIRTUAL_BUCKET" --key "$run/block$i/meta.json" --body "$tmp/meta.json" >/dev/null
done

listed=$(count proxy "$VIRTUAL_BUCKET" "$run/")
echo "== $VIRTUAL_BUCKET lists $listed of them"
[ "$listed" = "$OBJECTS" ] || fail "expected $OBJECTS objects in the virtual bucket, listed $listed"

proxy s3 cp "s3://$VIRTUAL_BUCKET/$run/block1/meta.json" "$tmp/back.json" >/dev/null
grep -q '"block":1}' "$tmp/back.json" || fail "block1/meta.json came back as: $(cat "$tmp/back.json")"
echo "== read back block1/meta.json"

echo "== where they landed (listed on $S3_ENDPOINT directly)"
total=0
for shard in $SHARD_BUCKETS; do
  n=$(count backend "$shard" "$run/")
  echo "   $shard: $n"
  total=$((total + n))
done
[ "$total" = "$OBJECTS" ] || fail "the shard buckets hold $total of the $OBJECTS objects"

proxy s3 rm --recursive --quiet "s3://$VIRTUAL_BUCKET/$run/"
left=$(count proxy "$VIRTUAL_BUCKET" "$run/")
[ "$left" = 0 ] || fail "$left objects left after deleting $run/"
echo "smoke test passed"
