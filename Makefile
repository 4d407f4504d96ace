# p2prc — every target brings in what it needs itself.
SHELL := /bin/bash
PREFIX ?= $(if $(filter 0,$(shell id -u)),/usr/local,$(HOME)/.local)
BUN := node_modules/.bin/bun
SOURCES := $(shell find abstractions client server p2p config core store cli plugins -name '*.ts' ! -name '*.test.ts' 2>/dev/null)
# How the binary is built (test/binary.test.ts and bench/startup.ts read this line too; Docs/Installation.md
# explains each flag). --compile-jit-policy makes the JIT 10000 times more reluctant: a CLI command runs
# once and a node's own work is small, so the interpreter serves both with less memory and CPU than
# compiling would.
BUILD_FLAGS := --compile --minify --bytecode --format=esm --splitting --external cpu-features --compile-jit-policy=10000

.PHONY: all build install run test bench lint clean deps

all: build

# npm ci when node_modules is missing or older than the lock file. Install scripts stay off (better-sqlite3
# ships prebuilt addons; nothing needs compiling); only bun's own script runs, to link its platform binary.
node_modules/.deps-stamp: package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm not found; installing Debian's nodejs and npm" >&2; \
	  apt-get update -qq && apt-get install -y -qq nodejs npm; }
	npm ci --ignore-scripts --no-audit --no-fund
	node node_modules/bun/install.js
	@touch $@

deps: node_modules/.deps-stamp

p2prc: node_modules/.deps-stamp $(SOURCES) tsconfig.json server/engine/unused-transports.cjs
	$(BUN) build $(BUILD_FLAGS) cli/main.ts --outfile p2prc

build: p2prc

install: p2prc
	install -d "$(PREFIX)/bin"
	install -m 0755 p2prc "$(PREFIX)/bin/p2prc"
	@echo "installed $(PREFIX)/bin/p2prc"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "add to your shell profile:  export PATH=\"$(PREFIX)/bin:\$$PATH\"";; esac

# A server node on embedded defaults: home ~/.config/p2prc (or $P2PRC), the local Docker engine; with no
# engine answering and none chosen (DOCKER_HOST, dockerHost), one is brought up as `make test` does.
run: p2prc
	./p2prc --dc
	@env_lines=$$(test/engine/engine-for-run.sh) || exit 1; eval "$$env_lines"; exec ./p2prc --as-server

test: p2prc
	test/run.sh

bench: p2prc
	bench/run.sh

lint: node_modules/.deps-stamp
	node_modules/.bin/biome check .
	node_modules/.bin/tsc --noEmit -p .

clean:
	rm -rf p2prc bench/out node_modules/.deps-stamp
