# sessionbridge — see README.md.
GO        ?= go
FUZZTIME  ?= 10m
BENCHTIME ?= 1s
PKGS      := ./...
GOBIN     := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2

.PHONY: run test deps bench lint fuzz fuzz-short

## run: the demo monolith with the bridge on 127.0.0.1:8080 (embedded Redis unless REDIS_URL is set)
run:
	BRIDGE_INSECURE_COOKIES=1 $(GO) run ./legacyapp/cmd/legacyapp

## deps: install what the tests need (as root with apt-get), or say how
deps:
	@scripts/deps.sh redis-server redis-sentinel redis-cli chromium

## test: every test, with the race detector, on a real redis-server
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

## bench: the benchmarks
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

## lint: formatting, vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt'ed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck $(PKGS)

## fuzz: each fuzz target for FUZZTIME (default 10m)
fuzz:
	@echo "no fuzz targets yet"
