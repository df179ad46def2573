#!/usr/bin/env bash
# Builds MinIO's benchmark tool warp once into $TSS_CACHE/warp/<version>/warp
# and prints the binary's path; later runs reuse it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../helpers/build-go-module.sh"

# The module proxy refuses `@latest` and most tags here; v1.3.1 is the newest
# it serves, and the checksum database does not answer for it.
name=Warp
module=github.com/minio/warp
version=v1.3.1
label=$version
pinned_sum='h1:EHNax13sUn7YUR4bYpUrgXW+ldtMKoELPYzN4rrtH6U='
main_pkg=.
ldflags="-s -w"

build_go_module
