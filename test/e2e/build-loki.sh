#!/usr/bin/env bash
# Builds Grafana Loki once into $TSS_CACHE/loki/<version>/loki and prints the
# binary's path; later runs reuse it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../helpers/build-go-module.sh"

name=Loki
module=github.com/grafana/loki/v3
version=v3.7.8
label=$version
main_pkg=./cmd/loki
ldflags="-s -w -X github.com/grafana/loki/v3/pkg/util/build.Version=${version#v} -X github.com/grafana/loki/v3/pkg/util/build.Branch=release"

# pkg/push is a module of its own, so the module zip leaves it out and the
# replace pointing at ./pkg/push has nothing to point at: use the version
# go.mod requires instead.
prepare_source() {
  go mod edit -dropreplace github.com/grafana/loki/pkg/push
}

build_go_module
