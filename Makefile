# The two commands: `make run` starts the whole platform locally (installing
# what it needs), `make test` runs every test on the real broker and Redis.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test stop infra install bench bench-timers lint status

run:
	deploy/local/up.sh

test: install infra
	deploy/local/test.sh

stop:
	deploy/local/down.sh

install:
	deploy/local/install.sh

infra:
	deploy/local/infra.sh start

status:
	deploy/local/infra.sh status

# End-to-end throughput and latency (prints figures; not a test).
bench: install infra
	cargo bench -p whistle-tests --bench spine

# Timer engine vs BullMQ delayed jobs on the same redis-server (prints a table).
bench-timers: install infra
	cargo bench -p whistle-tests --bench timers

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
