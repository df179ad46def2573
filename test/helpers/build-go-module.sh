# shellcheck shell=bash disable=SC2154,SC2164
# (the variables below are set, and set -euo pipefail, by the sourcing script)

# Sourced by test/e2e/build-tempo.sh, build-loki.sh and test/bench/build-warp.sh.
# Grafana's programs cannot be built with `go install` (their go.mod has
# replace directives), and the checksum database does not answer for every
# version the module proxy serves here, so the module is downloaded and built
# as a main module in a scratch copy, once, into $TSS_CACHE/<name>/<version>/<name>.
#
# build_go_module reads:
#   name        Tempo, Loki or Warp; lower-cased, the binary's and cache's name
#   module      the Go module, version its version
#   label       the version as the build messages give it
#   main_pkg    the main package within the module
#   ldflags     for go build
#   pinned_sum  (optional) the module's h1: hash, for a version the checksum
#               database does not answer for
# and calls prepare_source, if defined, in the copy before building. It prints
# the binary's path.
build_go_module() {
  local prog=${name,,}
  TSS_CACHE=${TSS_CACHE:-$HOME/.cache/tempo-s3-shard}
  local dest=$TSS_CACHE/$prog/$version
  local bin=$dest/$prog
  if [[ -x $bin ]]; then
    echo "$bin"
    exit 0
  fi

  mkdir -p "$dest"
  # Two callers at once (make e2e and a hand-started build) must not build twice.
  exec 9>"$dest/.lock"
  flock 9
  if [[ -x $bin ]]; then
    echo "$bin"
    exit 0
  fi

  local start
  start=$(date +%s)
  # Not local: the EXIT trap reads it after the function has returned.
  work=$(mktemp -d "${TMPDIR:-/tmp}/$prog-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT

  # With a pinned hash the checksum database is left out and the hash checked
  # after the download instead.
  local -a download_env=()
  [[ -z ${pinned_sum:-} ]] || download_env=(GONOSUMDB="$module" GOFLAGS=-mod=mod)
  local info dir sum
  info=$(cd "$work" && env "${download_env[@]}" go mod download -json "$module@$version")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
  sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$info")
  if [[ -z $dir || ( -n ${pinned_sum:-} && $sum != "$pinned_sum" ) ]]; then
    echo "build-$prog: download of $module@$version failed${pinned_sum:+ or its hash ($sum) is not $pinned_sum}" >&2
    echo "$info" >&2
    exit 1
  fi

  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  echo "build-$prog: building $name $label (this takes a while on 2 cores)" >&2
  (
    cd "$work/src"
    if declare -F prepare_source >/dev/null; then prepare_source; fi
    GOFLAGS='-mod=mod -buildvcs=false' nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$work/$prog" "$main_pkg"
  )
  mv "$work/$prog" "$bin"
  echo "build-$prog: built $bin in $(( $(date +%s) - start ))s" >&2
  echo "$bin"
}
