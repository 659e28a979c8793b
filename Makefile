# zrepl-ha: build, test and lab targets. Every target installs what it needs;
# repeat runs skip what is already done (installed packages, built zfs module,
# cached initramfs).
GO      ?= go
OUT     := .lab
LAB     := $(GO) run ./fixtures/lab/cmd/lab
SUMMARY := $(GO) run ./fixtures/testsummary
PAIR    := $(GO) run ./fixtures/pair/cmd/pair
# The scenarios make test runs (a representative subset; make scenarios runs all nine).
TEST_SCENARIOS ?= 1|3|9
# make scenarios: how many times to run the whole set (medians over the runs).
RUNS ?= 1
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Packages that have platform tests (real ZFS in the lab VM).
PLATFORM_PKGS := zfsrepl cmd/zrepl-ha transport/zfsrpc scheduler failover failover/watchdog failover/vip failover/shares failover/drill
comma := ,
empty :=
space := $(empty) $(empty)
PLATFORM_LIST := $(subst $(space),$(comma),$(addprefix ./,$(PLATFORM_PKGS)))
PLATFORM_JSON := $(foreach p,$(PLATFORM_PKGS),-noskip $(OUT)/platform-$(subst /,-,$(p)).json)

.PHONY: all build test unit vet platform-test lab-install lab-shell clean fuzz bench scenarios demo

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/zrepl-ha ./cmd/zrepl-ha

# make test: go vet, the unit tests (-race), then the platform tests in the
# lab VM. Every layer runs even when an earlier one fails; the last line is
# "N passed, N failed, N skipped" over all of them.
test:
	@mkdir -p $(OUT); rm -f $(OUT)/*.json; rc=0; vet=ok; \
	echo "== go vet"; \
	$(GO) vet ./... && $(GO) vet -tags platform ./... || { vet=fail; rc=1; }; \
	echo "== unit tests (go test -race ./...)"; \
	$(GO) test -race -count=1 -json ./... > $(OUT)/unit.json || rc=1; \
	echo "== lab install (skipped when already done)"; \
	bash fixtures/lab/install.sh || rc=1; \
	echo "== platform tests: $(PLATFORM_PKGS) (real OpenZFS in a TCG VM)"; \
	$(LAB) gotest -pkgs $(PLATFORM_LIST) -jsondir $(OUT) -mem 4096 -timeout 45m -- -test.run '^TestPlatform' -test.parallel 4 || rc=1; \
	echo "== witness tests (a real etcd on loopback)"; \
	bash fixtures/etcd/install.sh || rc=1; \
	$(GO) test -tags platform -count=1 -json -run '^TestPlatformWitness' ./failover/witness > $(OUT)/platform-witness.json || rc=1; \
	echo "== lab tests (boot, panic, hang and watchdog handling on the host)"; \
	$(GO) test -tags platform -count=1 -json -run '^TestPlatformLab' ./fixtures/lab > $(OUT)/platform-lab.json || rc=1; \
	echo "== scenarios on the two-node lab: $(TEST_SCENARIOS) (docs/scenarios.md)"; \
	$(GO) test -tags platform -count=1 -timeout 40m -json -run '^TestScenario($(TEST_SCENARIOS))$$' ./fixtures/scenarios \
	  -args -scenarios.logs $(CURDIR)/$(OUT)/scenarios-logs > $(OUT)/scenarios.json || rc=1; \
	grep -ho 'measured: [^"]*' $(OUT)/scenarios.json | sed 's/\\n$$//' || true; \
	left=ok; $(LAB) leftovers || left=fail; \
	pairleft=ok; $(PAIR) leftovers || pairleft=fail; \
	echo "== summary"; \
	$(SUMMARY) -check "go vet=$$vet" -check "no lab leftovers=$$left" -check "no pair lab leftovers=$$pairleft" \
	  $(PLATFORM_JSON) -noskip $(OUT)/platform-witness.json -noskip $(OUT)/platform-lab.json -noskip $(OUT)/scenarios.json $(OUT)/unit.json || rc=1; \
	exit $$rc

unit:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./... && $(GO) vet -tags platform ./...

platform-test: lab-install
	@mkdir -p $(OUT)
	$(LAB) gotest -pkgs $(PLATFORM_LIST) -jsondir $(OUT) -mem 4096 -timeout 45m -- -test.run '^TestPlatform' -test.parallel 4

lab-install:
	bash fixtures/lab/install.sh

# An interactive shell in a lab VM (zfs loaded, host root read-only underneath).
lab-shell: lab-install
	$(LAB) shell

# Short fuzz runs of every decoder and validator.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzValidateSnapshot -fuzztime 20s ./zfsrepl
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 20s ./internal/config
	for f in FuzzDecoder FuzzHello FuzzHeartbeat FuzzEnd FuzzChunkReader; do \
	  $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s ./transport || exit 1; done

clean:
	rm -rf bin $(OUT)

# Benchmarks against real ZFS in the lab VM, each reported as a ratio against
# a baseline measured in the same run (see docs/benchmarks.md).
bench: lab-install
	@mkdir -p $(OUT)
	$(LAB) gotest -pkgs ./zfsrepl,./scheduler -jsondir $(OUT) -mem 6144 -timeout 90m -- -test.run '^$$' -test.bench 'BenchmarkPlatform' -test.benchtime 1x

# make scenarios: the nine scenarios of issue 8 on the two-node lab, and
# scenario 1's copy with no fault (its baseline), one boot of the pair per
# run, scenario 7 for its full 5 minutes, RUNS times,
# then the pair lab's own test; prints the table with the reference's
# numbers beside our medians and writes it into docs/scenarios.md.
scenarios: lab-install
	@mkdir -p $(OUT); rm -f $(OUT)/scenarios-*.json $(OUT)/scenarios.jsonl; rc=0; files=""; \
	for i in $$(seq $(RUNS)); do \
	  echo "== scenarios, run $$i of $(RUNS) (about 40 minutes each under TCG)"; \
	  $(GO) test -tags platform -count=1 -timeout 120m -json -run '^TestScenario([1-9]|1Baseline)$$' ./fixtures/scenarios \
	    -args -scenarios.results $(CURDIR)/$(OUT)/scenarios.jsonl -scenarios.long -scenarios.logs $(CURDIR)/$(OUT)/scenarios-logs/run$$i > $(OUT)/scenarios-run$$i.json || rc=1; \
	  grep -ho 'measured: [^"]*' $(OUT)/scenarios-run$$i.json | sed 's/\\n$$//' || true; \
	  files="$$files -noskip $(OUT)/scenarios-run$$i.json"; \
	done; \
	echo "== the pair lab's own test (TestPlatformPair)"; \
	$(GO) test -tags platform -count=1 -timeout 40m -json -run '^TestPlatformPair$$' ./fixtures/pair > $(OUT)/scenarios-pair.json || rc=1; \
	pairleft=ok; $(PAIR) leftovers || pairleft=fail; \
	echo "== table"; \
	$(GO) run ./fixtures/scenarios/cmd/report -results $(OUT)/scenarios.jsonl -doc docs/scenarios.md \
	  -env "Environment: two TCG VMs (no KVM) of 1 vCPU each on a 2-core host, medians over $(RUNS) run(s) of each scenario." || rc=1; \
	echo "== summary"; \
	$(SUMMARY) -check "no pair lab leftovers=$$pairleft" $$files -noskip $(OUT)/scenarios-pair.json || rc=1; \
	exit $$rc

# make demo: boot the pair, pull the active's cable under an SMB copy and
# an NFS writer (the VIP is routed through the passive), plug it back,
# then cut the active's power (a failover) and power it on (a rejoin);
# print the times. Log: .lab/demo/demo.log.
demo: lab-install
	$(GO) run ./fixtures/scenarios/cmd/demo -out $(OUT)/demo
