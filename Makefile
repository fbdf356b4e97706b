# tobira - see README.md. The two commands a newcomer runs:
#   make demo   # builds, installs what is missing, runs the whole loop on embedded defaults
#   make test   # installs what is missing (pcscd, vpcd, mosquitto ...) and runs every test
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin
CMDS := tobira tobira-hq tobira-cardsim tobira-release
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# vpcd listens on fixed ports, so test packages that use it must not overlap:
# the pcsctest helper serialises them with a lock file; -p 2 matches the cores.
TESTFLAGS ?= -count=1 -timeout 30m

.PHONY: all build demo test bench deps-build deps-test vet fmt-check fuzz-smoke clean

all: build

deps-build:
	@scripts/install-deps build

deps-test:
	@scripts/install-deps test

build: deps-build
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

demo: build
	$(BIN)/tobira demo

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

test: deps-test deps-build fmt-check vet
	$(GO) test $(TESTFLAGS) ./...

bench: deps-test deps-build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

clean:
	rm -rf $(BIN)
