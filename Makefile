# DevOpstic — the two commands a newcomer needs are `make run` and `make test`.

GO      ?= go
GOFLAGS ?=
BIN     := bin
# bash for pipefail: make test pipes go test through tee and keeps its exit status.
SHELL   := bash

.PHONY: run demo ui-check test test-short chaos bench bench-go bench-metrics build vet fmt clean help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## start everything locally: Postgres under .data/, embedded NATS, ingest and writer on 127.0.0.1:8080
	$(GO) build -o $(BIN)/devopstic ./services/devopstic
	exec $(BIN)/devopstic dev

demo: ## load a generated 90-day history of 8 pipelines into a running `make run` (for the dashboards)
	$(GO) run ./services/devopstic demo

ui-check: ## the first page in headless Chromium: make run + make demo, log in, every figure there, screenshots in .data/
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "ui-check: installing chromium (Debian package)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq --no-install-recommends chromium >/dev/null \
			|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
		else \
			echo "ui-check: chromium is missing: install it (sudo apt-get install chromium)" >&2; exit 1; \
		fi; }
	$(GO) test -tags uicheck -count=1 -v -run '^TestUICheck$$' -timeout 15m ./services/devopstic/

test: tools ## every test, against a real Postgres and a real NATS server that the tests start themselves
	$(GO) vet ./...
	@$(call gotest,-race)

test-short: tools ## the same tests without the race detector (faster)
	@$(call gotest,)

# gotest runs every package's tests with flags $(1) and then prints how long each package took,
# slowest first, so that the next slow test is visible; it fails when go test does.
define gotest
log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
set -o pipefail; echo "$(GO) test -count=1 $(1) -timeout 15m ./..."; \
$(GO) test -count=1 $(1) -timeout 15m ./... 2>&1 | tee "$$log"; rc=$$?; \
echo; echo "time per package, slowest first:"; \
awk '($$1 == "ok" || $$1 == "FAIL") && $$3 ~ /^[0-9.]+s$$/ { t = $$3; sub(/s$$/, "", t); printf "%8.1fs  %-4s  %s\n", t, $$1, $$2 }' "$$log" | sort -rn; \
exit $$rc
endef

chaos: ## the fault tests: writers SIGKILLed, Postgres and NATS stopped, duplicates, shuffles, poison, replays, rebuild (about 4 minutes)
	DEVOPSTIC_CHAOS=1 $(GO) test -count=1 -v -timeout 30m -run 'TestChaos|TestRebuildWhileWriting' ./services/devopstic/

# BENCH_SCALE multiplies every size: 1 (the default) loads 10 million events for the metrics API,
# drains two backlogs of a million, and replays and rebuilds the first (about 40 minutes on 2
# cores); 0.01 is a quick look.
BENCH_SCALE ?= 1

# BENCH_BASELINE, a git ref (a commit, a tag), adds rows comparing single-event POSTs to this
# tree's ingest and to that ref's, measured in turns in the same run: what a change costs.
BENCH_BASELINE ?=

bench: build ## the performance table: ceilings, ingest, writer, replay, rebuild, end to end, metrics API, memory (BENCH_SCALE, BENCH_BASELINE)
ifneq ($(BENCH_BASELINE),)
	@tmp=$$(mktemp -d) && git worktree add --detach -q "$$tmp" "$(BENCH_BASELINE)" && \
	(cd "$$tmp" && CGO_ENABLED=0 $(GO) build -o "$(CURDIR)/$(BIN)/baseline/ingest" ./services/ingest); rc=$$?; \
	git worktree remove --force "$$tmp"; exit $$rc
	$(BIN)/bench -scale $(BENCH_SCALE) -baseline $(BIN)/baseline/ingest -baseline-label $(BENCH_BASELINE)
else
	$(BIN)/bench -scale $(BENCH_SCALE)
endif

bench-go: ## the Go benchmarks of the parts (publish sync=2m vs always, writer stream vs direct, POST to row, metrics on hostile histories)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./pkg/stream/
	$(GO) test -run '^$$' -bench . -benchtime 20000x ./pkg/writer/
	$(GO) test -run '^$$' -bench EndToEnd -benchtime 200x ./services/devopstic/
	$(GO) test -run '^$$' -bench RandomHistories -benchtime 2000x ./services/devopstic/

bench-metrics: ## the metrics API's queries straight on the store, over 10M events x BENCH_SCALE: p50/p95 against an index scan
	DEVOPSTIC_BENCH_SCALE=$(BENCH_SCALE) $(GO) test -run '^$$' -bench Metrics -benchtime 200x -timeout 60m ./pkg/dora/

build: ## build the binaries into bin/: ingest, writer, devopstic and bench (make bench's, which no image ships)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./services/...

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output (keeps .data/, the local database and stream)
	rm -rf $(BIN)

# ---- Deployment: tools for the deployment tests, container images, the cluster test.

.PHONY: tools images cluster-test

# helm is built once from the Go module proxy into a cache outside the work tree (the tests read
# DEVOPSTIC_HELM); docker-compose is Debian's package. deployments/deployments_test.go fails,
# saying so, when either is missing.
HELM_VERSION := v3.22.0
TOOLS        ?= $(abspath $(shell $(GO) env GOCACHE)/../devopstic-tools)
HELM         := $(TOOLS)/helm-$(HELM_VERSION)/helm
export DEVOPSTIC_HELM := $(HELM)

tools: ## install what the deployment tests need: helm (built from the Go module proxy, once) and docker-compose (apt)
	@test -x $(HELM) || { echo "tools: building helm $(HELM_VERSION) into $(dir $(HELM)) (once, about 2 minutes)"; \
		GOBIN=$(dir $(HELM)) GOFLAGS=-buildvcs=false $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }
	@command -v docker-compose >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "tools: installing docker-compose (Debian package)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
			|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }; \
		else \
			echo "tools: docker-compose is missing: install it (sudo apt-get install docker-compose, or brew install docker-compose)" >&2; exit 1; \
		fi; }

IMAGE_PREFIX ?= devopstic
IMAGE_TAG    ?= latest

images: ## build the images devopstic/{ingest,writer,devopstic}:latest (IMAGE_PREFIX, IMAGE_TAG; needs a Docker engine)
	for target in ingest writer devopstic; do \
		docker build -f deployments/docker/Dockerfile --target $$target -t $(IMAGE_PREFIX)/$$target:$(IMAGE_TAG) . || exit 1; \
	done

cluster-test: ## 3-node NATS cluster, 50,000 events, the stream leader killed and restarted: nothing lost or doubled
	$(GO) vet -tags cluster ./pkg/service/
	$(GO) test -tags cluster -count=1 -v -run TestClusterSurvivesTheLossOfANode -timeout 10m ./pkg/service/
