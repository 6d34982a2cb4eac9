# The two commands: `make run` starts the whole platform locally (installing
# what it needs), `make test` runs every test on the real broker and Redis.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test stop infra install bench load chaos bench-timers bench-classifier bench-answers model lint status

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

# The pipeline at speed, as deployed: every service its own process (release
# build) on a fresh broker and Redis of its own, open-loop load at rising
# rates, the raw broker in the same run (prints a table and one line; not a
# test). LOAD_RATES, LOAD_SECONDS and the rest: see tests/load/main.rs.
load: install
	deploy/local/load.sh

# The platform under faults: two processes of every service, kill -9 of each
# in turn, Redis flushed, poison, the broker restarted; then what was lost,
# duplicated or left stalled (prints a table and one line).
chaos: install
	deploy/local/chaos.sh

# Timer engine vs BullMQ delayed jobs on the same redis-server (prints a table).
bench-timers: install infra
	cargo bench -p whistle-tests --bench timers

# The classifier's model, from the corpus and the city's rules (writes
# services/classifier/model/whistle.model and prints dev and test figures).
model: install
	python3 deploy/config/gen-demo-city.py
	cargo run --quiet -p whistle-classifier -- train --compare

# The classifier's figures on the held-out test split, per language (prints a table).
bench-classifier: install
	cargo run --quiet --release -p whistle-classifier -- eval

# The knowledge base's direct answers on the held-out half of its labeled set,
# per language (precision of the answers given, share of questions answered).
bench-answers: install
	cargo run --quiet --release -p whistle-classifier -- answers

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
