#!/usr/bin/env bash
# Builds Grafana Loki once into $TSS_CACHE/loki/<version>/loki and prints the
# binary's path; later runs reuse it. Like Tempo, Loki's go.mod has replace
# directives, so the module is downloaded and built as a main module in a
# scratch copy.
set -euo pipefail

LOKI_MODULE=github.com/grafana/loki/v3
LOKI_VERSION=v3.7.8

TSS_CACHE=${TSS_CACHE:-$HOME/.cache/tempo-s3-shard}
dest=$TSS_CACHE/loki/$LOKI_VERSION
bin=$dest/loki
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/loki-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

dir=$(cd "$work" && go mod download -json "$LOKI_MODULE@$LOKI_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z $dir ]]; then
  echo "build-loki: download of $LOKI_MODULE@$LOKI_VERSION failed" >&2
  exit 1
fi
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
echo "build-loki: building Loki $LOKI_VERSION (this takes a while on 2 cores)" >&2
(
  cd "$work/src"
  # pkg/push is a module of its own, so the module zip leaves it out and the
  # replace pointing at ./pkg/push has nothing to point at: use the version
  # go.mod requires instead.
  go mod edit -dropreplace github.com/grafana/loki/pkg/push
  GOFLAGS='-mod=mod -buildvcs=false' nice -n 10 go build -trimpath \
    -ldflags "-s -w -X github.com/grafana/loki/v3/pkg/util/build.Version=${LOKI_VERSION#v} -X github.com/grafana/loki/v3/pkg/util/build.Branch=release" \
    -o "$work/loki" ./cmd/loki
)
mv "$work/loki" "$bin"
echo "build-loki: built $bin in $(( $(date +%s) - start ))s" >&2
echo "$bin"
