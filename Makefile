# pgtenant developer commands. `make demo` and `make test` are the README's two commands.
GO ?= go
PKGS := ./...

.PHONY: demo test test-short test-clients build vet fuzz bench

## demo: start two local regions, the proxy, and print psql lines (Ctrl-C stops).
## ARGS passes flags, e.g. make demo ARGS="--listen 127.0.0.1:7432 --admin-listen 127.0.0.1:9188"
## (the binary is built and run directly: `go run` would turn Ctrl-C into exit status 1)
demo:
	scripts/deps.sh demo
	$(GO) build -o bin/pgtenant ./cmd/pgtenant
	@trap '' INT; bin/pgtenant demo $(ARGS)

## test: every test, with real PostgreSQL clusters and real clients, under the race detector
test: vet
	scripts/deps.sh test
	$(GO) test -race -count=1 -timeout 25m $(PKGS)
	# the memory bounds, measured without the race detector (which enlarges every stack and
	# makes sync.Pool drop buffers): an idle client's heap and stack, a relayed statement's allocations
	$(GO) test -count=1 -timeout 5m -run '^TestFloodIdleClients$$' ./test/e2e
	$(GO) test -count=1 -timeout 5m -run '^TestSessionRelayAllocations$$' ./proxy

## test-short: the fast layers only (go test -short: skips the e2e package, pgbench and long runs)
test-short:
	$(GO) test -short -count=1 $(PKGS)

## test-clients: the client matrix (test/clients) alone; CLIENTS=psycopg2,pgx limits it,
## UPDATE=1 rewrites docs/compat.md from the results
test-clients:
	scripts/deps.sh test
	PGT_CLIENTS=$(CLIENTS) $(GO) test -count=1 -timeout 20m -v -run TestClients ./test/clients $(if $(UPDATE),-args -update)

## bench: pgtenant vs direct vs PgBouncer with pgbench (about 25 minutes; --smoke for seconds)
bench:
	scripts/deps.sh test
	$(GO) run ./bench/cmd/pgtenant-bench $(BENCH_FLAGS)

build:
	scripts/build.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	CGO_ENABLED=0 $(GO) vet ./proxy ./tenancy   # the proxy and its tests build without cgo (proxy/deps_test.go)
