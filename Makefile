# pve-autoscaler: build, test, benchmark.
#
#   make demo    the daemon against the simulated world (DEMO_ARGS='--speed 20');
#                SCENARIO=upgrade: the short act of a rolling replacement
#   make test    what CI runs (.ci/run): gofmt check, go vet, staticcheck, the
#                Kubernetes test bed (built on first run), go test -race, and
#                the date-dependent tests again a year back and a year ahead
#   make build   static release binaries in bin/ (pve-autoscaler, pvesim)
#   make bench       fast benchmarks (decision engine, simulator, idle tick)
#   make bench-e2e   scale-up latency, time to capacity and warm standby in the
#                    simulated world with realistic latencies (about 13 minutes)
#   make bench-idle  the daemon's memory and PVE calls after 10 idle minutes
#   make bench-peers side by side with Karpenter (its kwok provider, built
#                    once into the cache) on one control plane; writes the
#                    table into docs/benchmarks.md (PEERS_ARGS='--runs 1';
#                    about an hour with the defaults: the 3 runs of the
#                    1-hour diurnal replay at once, beside 3 runs of the rest)
#   make fuzz    every fuzz target (decision engine, config, snapshot, trace)
#                for FUZZTIME each (default 60s)
#   make chaos   200 randomized fault-and-crash sequences against the safety
#                rules (CHAOS_SEED=N replays one)
#   make fmt     gofmt -w
#   make deb     Debian package in dist/ (nfpm, pinned in go.mod as a tool),
#                checked by lintian when it is installed
#   make deb-tools  install the package test's lintian and systemd-analyze
#                (apt-get) when missing and root; not root: fail under CI=true,
#                else say how and go on (the package test skips those checks)

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN       := bin
FUZZTIME  ?= 60s
DIST      ?= dist
DEB_ARCH  ?= amd64
# Debian versions must start with a digit: tags v1.2.3 become 1.2.3.
DEB_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' | grep . || echo 0.0.0+git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))

# Tools are installed once per version into a cache outside the work tree.
CACHE               ?= $(HOME)/.cache/pve-autoscaler
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := $(CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)

.PHONY: all build test fmt fmt-check vet staticcheck unit dates chaos bench bench-e2e bench-idle bench-peers fuzz clean kube-testbed deb deb-files deb-tools demo

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/ ./cmd/pve-autoscaler ./cmd/pvesim

test: fmt-check vet staticcheck deb-tools unit dates

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted (run make fmt):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(STATICCHECK):
	@echo "installing staticcheck $(STATICCHECK_VERSION) (first run only)"
	@mkdir -p $(CACHE)/tools/tmp
	GOBIN=$(CACHE)/tools/tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(CACHE)/tools/tmp/staticcheck $@

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

# The real Kubernetes control plane the kube tests run on (built once, cached).
kube-testbed:
	@bash hack/kube-testbed.sh >/dev/null

DEMO_ARGS ?=
SCENARIO ?=
demo:
	@bash hack/kube-testbed.sh >/dev/null
	$(GO) run ./cmd/pve-autoscaler-demo $(if $(SCENARIO),--scenario $(SCENARIO)) $(DEMO_ARGS)

# -timeout: the daemon package's end-to-end tests take 8 to 10 minutes under
# -race on two loaded cores, and deploy's first `make deb` builds nfpm and
# the release binary from a cold cache: go test's default 10m per package
# binary is too close.
unit: kube-testbed
	$(GO) test -race -timeout 30m ./...

# The date-dependent packages once more with their fixed dates a year
# (52 weeks: same weekday and hour) in the past and in the future: no
# result may depend on today's date.
dates:
	PVE_AUTOSCALER_TEST_SHIFT_WEEKS=-52 $(GO) test -count=1 ./scaler ./internal/simulate ./internal/testclock
	PVE_AUTOSCALER_TEST_SHIFT_WEEKS=52 $(GO) test -count=1 ./scaler ./internal/simulate ./internal/testclock

bench: kube-testbed
	$(GO) test -run '^$$' -bench . -benchmem ./scaler ./internal/simulate
	$(GO) test -run '^$$' -bench IdleTick -benchtime 50x ./daemon

bench-e2e: kube-testbed
	$(GO) test -run '^$$' -bench 'ScaleUpLatency' -benchtime 3x -timeout 30m ./daemon
	$(GO) test -run '^$$' -bench 'TimeToCapacity2to6' -benchtime 1x -timeout 30m ./daemon
	$(GO) test -run '^$$' -bench 'StandbyVsClone' -benchtime 1x -timeout 30m ./daemon

bench-idle: kube-testbed
	$(GO) test -run '^$$' -bench IdleDaemon -benchtime 1x -timeout 30m ./cmd/pve-autoscaler

# Karpenter is built as a module of its own (hack/karpenter-kwok.sh):
# nothing of it enters go.mod.
PEERS_ARGS ?=
bench-peers: kube-testbed
	@bash hack/karpenter-kwok.sh >/dev/null
	$(GO) run ./cmd/pve-autoscaler-peers $(PEERS_ARGS)

# One target at a time: go test -fuzz takes one fuzz target per run.
FUZZ_TARGETS = ./scaler:FuzzDecide ./config:FuzzLoad ./scaler:FuzzParseSituation ./internal/simulate:FuzzParseTrace
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

# The randomized chaos test of the reconciler's safety rules: 200 seeded
# sequences (make test runs 20); CHAOS_SEED=N make chaos replays one.
CHAOS_SEQUENCES ?= 200
chaos:
	CHAOS_SEQUENCES=$(CHAOS_SEQUENCES) $(GO) test -race -count=1 -run '^TestChaos$$' -v ./scaler

# The package's generated files, in $(BIN)/deb (nfpm.yaml names them):
# copyright from the modules linked into the binary, changelog from
# CHANGELOG.md, and the man pages from the commands' own flag definitions.
# Dates are the last commit's, so the package is reproducible.
DEB_DATE ?= $(shell git log -1 --format=%cs 2>/dev/null || date -u +%F)
deb-files: build
	rm -rf $(BIN)/deb && mkdir -p $(BIN)/deb/man
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DEB_ARCH) $(GO) run ./hack/debian copyright > $(BIN)/deb/copyright
	$(GO) run ./hack/debian changelog -version $(DEB_VERSION) -date $(DEB_DATE) > $(BIN)/deb/changelog
	$(BIN)/pve-autoscaler gen-man --version $(DEB_VERSION) --date $(DEB_DATE) $(BIN)/deb/man
	gzip -9n $(BIN)/deb/changelog $(BIN)/deb/man/*

# lintian checks the package when it is installed (make deb-tools installs it);
# its overrides, each with its reason, are in deploy/lintian-overrides.
deb: deb-files
	@mkdir -p $(DIST)
	VERSION=$(DEB_VERSION) ARCH=$(DEB_ARCH) $(GO) tool nfpm pkg --packager deb --config deploy/nfpm.yaml --target $(DIST)/
	@if command -v lintian >/dev/null; then \
		echo "lintian $(DIST)/pve-autoscaler_$(DEB_VERSION)_$(DEB_ARCH).deb"; \
		lintian --fail-on error,warning --display-level '>=warning' $(DIST)/pve-autoscaler_$(DEB_VERSION)_$(DEB_ARCH).deb; \
	else echo "lintian not installed: package not checked (make deb-tools)"; fi

deb-tools:
	@missing=; command -v lintian >/dev/null || missing=" lintian"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing (apt-get, first run only)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	elif [ "$$CI" = true ]; then \
		echo "missing, and not root to install them: sudo apt-get install$$missing"; exit 1; \
	else echo "missing: sudo apt-get install$$missing (until then the package test skips what needs them)"; fi

clean:
	rm -rf $(BIN) $(DIST)
