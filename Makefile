SHELL := /bin/bash
# Everything a fresh machine needs is installed by these targets; caches live
# outside the repository (TSS_CACHE) so CI and later runs reuse them.
TSS_CACHE ?= $(HOME)/.cache/tempo-s3-shard
MINIO_BIN := $(TSS_CACHE)/bin/minio
VENV := $(TSS_CACHE)/venv
TAP_FLAGS ?= --disable-coverage --reporter=tap --timeout=600 --jobs=2
TESTS ?= test/*.test.ts test/integration/*.test.ts

export TSS_CACHE
export MINIO_BIN
export PATH := $(VENV)/bin:$(PATH)

.PHONY: all deps build test unit demo bench clean minio python zstd

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json minio python rclone

# rclone for test/integration/rclone.test.ts, from Debian (needs root).
.PHONY: rclone
rclone:
	@command -v rclone >/dev/null || { apt-cache policy rclone | grep -q 'Candidate: [0-9]' || apt-get update; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y rclone; }

minio: $(MINIO_BIN)
$(MINIO_BIN):
	mkdir -p $(TSS_CACHE)/bin
	GOBIN=$(TSS_CACHE)/bin go install github.com/minio/minio@latest

python: $(VENV)/.installed
$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet boto3 awscli
	touch $@

build: node_modules/.package-lock.json
	npx tsc -p tsconfig.json

# Runs every test and ends with "N passed, N failed".
test: deps build
	@set -o pipefail; npx tap $(TAP_FLAGS) $(TESTS) 2>&1 | tee $(TSS_CACHE)/last-test.log; status=$$?; \
	  node test/summary.js $(TSS_CACHE)/last-test.log; exit $$status

unit: build
	@set -o pipefail; npx tap $(TAP_FLAGS) test/*.test.ts 2>&1 | tee $(TSS_CACHE)/last-test.log; status=$$?; \
	  node test/summary.js $(TSS_CACHE)/last-test.log; exit $$status

# rclone is for the tests only.
demo: node_modules/.package-lock.json minio python build
	bash compose/local-demo.sh

# warp (MinIO's benchmark tool) is built once into $(TSS_CACHE)/warp; zstd
# reads the operation records it writes.
bench: deps build zstd
	WARP_BIN=$$(bash test/bench/build-warp.sh) node dist/test/bench/run.js

zstd:
	@command -v zstd >/dev/null || { apt-cache policy zstd | grep -q 'Candidate: [0-9]' || apt-get update; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y zstd; }

clean:
	rm -rf dist

# Grafana Tempo, built once from source into $(TSS_CACHE)/tempo (10-20 minutes
# on 2 cores), then run against the proxy; ends with "N passed, N failed".
.PHONY: tempo loki e2e
tempo:
	bash test/e2e/build-tempo.sh

# Grafana Loki likewise, into $(TSS_CACHE)/loki (about 10 minutes on 2 cores).
loki:
	bash test/e2e/build-loki.sh

e2e: node_modules/.package-lock.json minio build tempo loki
	@set -o pipefail; npx tap --disable-coverage --reporter=tap --timeout=1800 --jobs=1 test/e2e/tempo.e2e.ts test/e2e/loki.e2e.ts 2>&1 | tee $(TSS_CACHE)/last-e2e.log; status=$$?; \
	  node test/summary.js $(TSS_CACHE)/last-e2e.log; exit $$status
