# mtai — the two commands: `make run` and `make test`.
GO        ?= go
BIN       ?= bin/mtai
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...

.PHONY: run build test test-go test-node test-browser services lint bench bench-quick clean

## run: start the gateway on its embedded defaults (no server needed)
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/mtai serve

## build: a static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/mtai

## test: the whole suite (brings PostgreSQL and Redis up if they are not running)
test: services lint test-go test-node test-browser

services:
	@scripts/services.sh

test-go:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

test-node:
	@scripts/test-node.sh

test-browser:
	@scripts/test-browser.sh

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## bench: direct vs through-gateway, interleaved; writes bench/results/
bench:
	$(GO) run ./bench/cmd/mtaibench -out bench/results

bench-quick:
	$(GO) run ./bench/cmd/mtaibench -quick -out bench/results

clean:
	rm -rf bin data
