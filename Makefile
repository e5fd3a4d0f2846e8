# sessionbridge — see README.md.
SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO        ?= go
FUZZTIME  ?= 10m
BENCHTIME ?= 1s
PKGS      := ./...
GOBIN     := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
# SHIP_TOOLCHAIN builds the binaries we ship (bridgectl, the demo) and is the
# one govulncheck judges: the approved toolchain, which the go command fetches
# like a module. Tests also run on the machine's Go (the go directive's
# version, the lowest we support).
SHIP_TOOLCHAIN ?= go1.27.3

.PHONY: run demo build test deps bench bench-http bench-instructions lint vulncheck fuzz loadtest loadtest-revocations

## run: the demo monolith with the bridge on 127.0.0.1:8080 (embedded Redis unless REDIS_URL is set)
run:
	BRIDGE_INSECURE_COOKIES=1 $(GO) run ./legacyapp/cmd/legacyapp

## build: the binaries we ship, bin/bridgectl and bin/legacyapp, with SHIP_TOOLCHAIN
build:
	GOTOOLCHAIN=$(SHIP_TOOLCHAIN) $(GO) build -o bin/ ./bridge/cmd/bridgectl ./legacyapp/cmd/legacyapp
	GOTOOLCHAIN=$(SHIP_TOOLCHAIN) $(GO) version bin/bridgectl

## demo: the demo and the traffic simulator together; watch http://127.0.0.1:8080/migration/
DEMO_DURATION ?= 10m
demo:
	GOTOOLCHAIN=$(SHIP_TOOLCHAIN) $(GO) build -o bin/ ./legacyapp/cmd/legacyapp ./legacyapp/cmd/traffic
	@LOG_LEVEL=warn BRIDGE_INSECURE_COOKIES=1 BRIDGE_FLUSH_INTERVAL=2s bin/legacyapp & demo=$$!; \
	trap 'kill $$demo 2>/dev/null; wait $$demo' EXIT INT TERM; \
	echo "dashboard: http://127.0.0.1:8080/migration/  (report: /migration/report.json)"; \
	bin/traffic -duration $(DEMO_DURATION)

## deps: install what the tests need (as root with apt-get), or say how
deps:
	@scripts/deps.sh redis-server redis-sentinel redis-cli chromium node npm

## test: every test, with the race detector, on a real redis-server (every
## fuzz target runs its committed seed corpus here; make fuzz explores); the
## short load test runs without it (the race detector's 10-30x slowdown
## turns 64 clients on two cores into an overload test); every benchmark
## once (each checks that its request is served; make bench measures)
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m -skip '^TestLoad$$' $(PKGS)
	$(GO) test -count=1 -run '^TestLoad$$' -v ./legacyapp/cmd/legacyapp/ | grep -E '^(=== RUN|---|\s+load_test|ok|FAIL|PASS)'
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./bridge | grep -E '^(ok|FAIL|---)'
	cd examples/bench && $(GO) vet ./... && $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x . | grep -E '^(ok|FAIL|---)'
	cd examples/express-downstream && npm ci --no-audit --no-fund && GO=$(GO) npm test

## loadtest: 64 concurrent clients against the demo for LOAD_DURATION (default 50s) on a real redis-server
LOAD_DURATION ?= 50s
loadtest: deps
	LOAD_DURATION=$(LOAD_DURATION) $(GO) test -count=1 -run '^TestLoad$$' -v -timeout 5m ./legacyapp/cmd/legacyapp/

## loadtest-revocations: REVOCATIONS (default 1M) revocations, two instances, a real redis-server: Redis CPU, bytes/s, instance memory (docs/operations.md)
REVOCATIONS ?= 1000000
loadtest-revocations: deps
	REVOCATIONS=$(REVOCATIONS) $(GO) test -count=1 -run '^TestRevocationsAtScale$$' -v -timeout 15m ./bridge/fleet/ | grep -E '^(=== RUN|---|\s+revoke_scale_test|ok|FAIL|PASS)'

## bench: the benchmarks of the library and of its peers (examples/bench), side by side, summarised with benchstat
bench: deps
	GO=$(GO) BENCHTIME=$(BENCHTIME) scripts/bench.sh

## bench-instructions: instructions per request of the JWT paths (valgrind), independent of the machine's load
bench-instructions:
	GO=$(GO) scripts/bench-instructions.sh

## bench-http: wrk against the demo: BRIDGE=off vs observe vs JWT cookie, alternating, 3 rounds
bench-http: deps
	@scripts/deps.sh wrk curl
	GO=$(GO) scripts/bench-http.sh

## lint: formatting, vet, staticcheck and govulncheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt'ed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck $(PKGS)
	GOTOOLCHAIN=$(SHIP_TOOLCHAIN) GO=$(GO) scripts/vulncheck.sh

## vulncheck: govulncheck with SHIP_TOOLCHAIN against the Go vulnerability database (built locally from golang.org/x/vulndb)
vulncheck:
	GOTOOLCHAIN=$(SHIP_TOOLCHAIN) GO=$(GO) scripts/vulncheck.sh

## fuzz: each fuzz target for FUZZTIME (default 10m), one after another
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh
