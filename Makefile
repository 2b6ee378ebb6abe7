# uprobefs — build, test, demo and benchmarks.
#
#   make demo    build, mount, probe a demo program, show hits, unmount
#   make test    prerequisites, gofmt, go vet, and every test under -race
#   make bench   benchmarks side by side with the kernel's uprobes -> BENCHMARKS.md

GO      ?= go
TIMEOUT ?= 12m
export GOFLAGS ?= -mod=mod

.PHONY: all build test prereq lint demo bench clean

all: build

build:
	$(GO) build ./...

# prereq checks (and, as root on Debian, installs or mounts) what the tests need:
# gcc for the C fixtures, strace for the someone-else's-tracee test, fuse3's
# fusermount3 for the non-root mount test, useradd for the throwaway users of
# the permission tests, /dev/fuse, and tracefs for the kernel uprobes we
# compare against.
prereq:
	@missing=""; \
	for c in gcc:gcc strace:strace fusermount3:fuse3 useradd:passwd; do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "prereq: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing) </dev/null >/dev/null || { echo "prereq: could not install$$missing" >&2; exit 1; }; \
	  else echo "prereq: missing$$missing (install them)" >&2; exit 1; fi; \
	fi
	@[ -e /dev/fuse ] || { [ "$$(id -u)" = 0 ] && mknod -m 666 /dev/fuse c 10 229; } || { echo "prereq: /dev/fuse missing" >&2; exit 1; }
	@# Users mount through fusermount3, which opens /dev/fuse as them: mode 0666, as Debian's udev rule makes it.
	@[ "$$(stat -c %a /dev/fuse)" = 666 ] || { [ "$$(id -u)" = 0 ] && chmod 666 /dev/fuse; } || echo "prereq: /dev/fuse is not 0666; the non-root mount test will fail" >&2
	@[ -e /sys/kernel/tracing/uprobe_events ] || { [ "$$(id -u)" = 0 ] && mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; } || echo "prereq: tracefs not mounted; kernel comparisons will be skipped" >&2

# lint: gofmt, go vet (also of the planted-bug build), and the structure
# rules: the engine (core/probes) depends on no os-level package but through
# the standard library (no x/sys/unix, no log/slog; it and the core packages
# it imports do not import os themselves), and no file under core/ or fs/ is
# over 500 lines.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags planted ./core/...
	@bad=$$($(GO) list -deps ./core/probes | grep -xE 'golang.org/x/sys/unix|log/slog'); \
	if [ -n "$$bad" ]; then echo "core/probes depends on: $$bad" >&2; exit 1; fi
	@bad=$$($(GO) list -f '{{.ImportPath}}: {{join .Imports " "}}' ./core/probes ./core/rmap ./core/srcu ./core/lockdep ./core/install | grep -wE 'os|golang.org/x/sys/unix|log/slog'); \
	if [ -n "$$bad" ]; then echo "engine packages import os-level packages: $$bad" >&2; exit 1; fi
	@big=$$(find core fs -name '*.go' -exec awk 'END { if (NR > 500) print FILENAME ": " NR " lines" }' {} \;); \
	if [ -n "$$big" ]; then echo "files over 500 lines:"; echo "$$big"; exit 1; fi

# test runs every test under -race, then the planted-bug tests (built with
# the "planted" tag: the production engine and world have no such hooks).
test: prereq lint
	$(GO) test -race -timeout $(TIMEOUT) ./...
	$(GO) test -race -tags planted -run Planted ./core/probes ./core/proc

# bench measures uprobefs side by side with the kernel's uprobes (tracefs) in
# one run and writes BENCHMARKS.md with the machine's facts; see bench/main.go.
# It cleans up every process and kernel uprobe event it creates, also on
# SIGINT/SIGTERM, and finishes in under 10 minutes. BENCHFLAGS: e.g. -runs 7.
bench: prereq
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT INT TERM && \
	$(GO) build -o "$$d/ufsbench" ./bench && \
	"$$d/ufsbench" -out BENCHMARKS.md $(BENCHFLAGS)

# demo builds uprobefs and a small C program, mounts uprobefs in a temporary
# directory, probes a private copy of the program by symbol, shows hits and
# events, unregisters and unmounts; it leaves no mount, process or temporary
# file behind, also when interrupted. Needs root. See demo/demo.sh.
demo: prereq
	@GO="$(GO)" sh demo/demo.sh

clean:
	$(GO) clean -testcache
