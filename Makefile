# berth: `make run` sets up, builds and starts the engine and an all-in-one
# node (control plane + agent) with a demo;
# `make test` sets up, builds and runs every test. Both run as root on Debian.

export PATH := /usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$(PATH)
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/berth/berth/internal/cli.Version=$(VERSION) -X github.com/berth/berth/internal/engine/daemon.BuildVersion=$(VERSION)
BIN     := $(CURDIR)/bin
ROOT    ?= /var/lib/berth
SOCK    ?= /run/berth/berth.sock
TESTIMG := $(BIN)/testimages

.PHONY: all deps test-deps build run stop test test-unit test-e2e test-orch test-conformance bench clean testimages

all: build

deps:
	@scripts/install-deps.sh

build: deps
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth ./cmd/berth
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-shim ./cmd/berth-shim
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-pause ./cmd/berth-pause
	@if [ -d cmd/berth-server ] && ls cmd/berth-server/*.go >/dev/null 2>&1; then \
		echo "CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth-server ./cmd/berth-server"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth-server ./cmd/berth-server; fi

testimages:
	@mkdir -p $(TESTIMG)
	$(GO) run ./tests/testimages -out $(TESTIMG)

run: deps build testimages
	@scripts/run-demo.sh $(BIN) $(TESTIMG) $(ROOT) $(SOCK)

stop:
	@pkill -f "^$(BIN)/berth-server server" && echo "berth server stopped" || echo "no berth server running from $(BIN)"
	@pkill -f "^$(BIN)/berth daemon" && echo "berth daemon stopped" || echo "no berth daemon running from $(BIN)"

test: test-deps build testimages test-unit test-e2e test-orch test-conformance

test-deps:
	@scripts/install-deps.sh test

test-unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/... ./cmd/...

test-e2e:
	BERTH_BIN_DIR=$(BIN) BERTH_TESTIMAGES=$(TESTIMG) $(GO) test -count=1 -timeout 20m $$($(GO) list ./tests/e2e/... | grep -v /tests/e2e/orch)

# The multi-node scenarios (docs/multinode.md) run alone: they measure
# failover times that a machine busy with the other e2e packages would blur.
test-orch:
	BERTH_BIN_DIR=$(BIN) BERTH_TESTIMAGES=$(TESTIMG) $(GO) test -count=1 -v -timeout 15m ./tests/e2e/orch/...

# The OCI distribution-spec conformance suite against `berth registry`.
test-conformance: build
	scripts/conformance.sh $(BIN)

bench: deps build testimages
	scripts/bench.sh $(BIN) $(TESTIMG)
	$(BIN)/berth-server bench
	$(GO) test -run '^$$' -bench BenchmarkSchedule -benchtime 5x ./internal/cluster/scheduler
	BERTH_BIN_DIR=$(BIN) BERTH_TESTIMAGES=$(TESTIMG) $(GO) test -count=1 -run '^$$' -bench PodStartup100 -benchtime 1x ./tests/e2e/orch

clean:
	rm -rf $(BIN)
