# DevOpstic — the two commands a newcomer needs are `make run` and `make test`.

GO      ?= go
GOFLAGS ?=
BIN     := bin

.PHONY: run demo test test-short bench build vet fmt clean help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## start everything locally: Postgres under .data/, embedded NATS, ingest and writer on 127.0.0.1:8080
	$(GO) build -o $(BIN)/devopstic ./services/devopstic
	exec $(BIN)/devopstic dev

demo: ## load a generated 90-day history of 8 pipelines into a running `make run` (for the dashboards)
	$(GO) run ./services/devopstic demo

test: ## every test, against a real Postgres and a real NATS server that the tests start themselves
	$(GO) vet ./...
	$(GO) test -count=1 -race -timeout 15m ./...

test-short: ## the same tests without the race detector (faster)
	$(GO) test -count=1 -timeout 15m ./...

bench: ## benchmarks, each with its baseline in the same run (publish: sync=2m vs always; writer: stream vs direct)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./pkg/stream/
	$(GO) test -run '^$$' -bench . -benchtime 20000x ./pkg/writer/
	$(GO) test -run '^$$' -bench . -benchtime 200x ./services/devopstic/

build: ## build the three binaries into bin/
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./services/...

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output (keeps .data/, the local database and stream)
	rm -rf $(BIN)
