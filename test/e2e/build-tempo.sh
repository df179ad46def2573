#!/usr/bin/env bash
# Builds Grafana Tempo once into $TSS_CACHE/tempo/<version>/tempo and prints
# the binary's path; later runs reuse it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../helpers/build-go-module.sh"

# Tempo's v2.x tags have no /v2 module path, so the module proxy knows them
# only as pseudo-versions of v1. This one is main at 2025-05-29, just after
# v2.8.0-rc.0 (the newest Tempo the module proxy serves here; the release
# tags themselves are refused).
name=Tempo
module=github.com/grafana/tempo
version=v1.5.1-0.20250529124718-87c2dc380cec
revision=87c2dc380ceca577d9c20336875013c059cb9624
label=2.8.0-rc.0-87c2dc3
# The checksum database does not answer for this pseudo-version here, so the
# module's hash is pinned instead and checked after the download.
pinned_sum='h1:wnzJov9RhSHGaTYGzTygL4qq986fLen8xSqnQgaMd28='
main_pkg=./cmd/tempo
ldflags="-s -w -X main.Version=$label -X main.Revision=$revision -X main.Branch=main"

build_go_module
