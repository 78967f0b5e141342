# Thin aliases for dev.py, which needs nothing but Python 3.11.
.PHONY: run test test-fast lint typecheck bench bench-raft bench-distro bench-capacity bench-peers bench-serving bench-grpc bench-watch cluster clean

run:
	python3 dev.py run

# Everything CI runs: lint, typecheck and the whole suite.
test:
	python3 dev.py test

# Unit tests only (under a minute).
test-fast:
	python3 dev.py test-fast

# lint-imports (the layering contracts) and ruff.
lint:
	python3 dev.py lint

# mypy strict with the django-stubs and DRF plugins.
typecheck:
	python3 dev.py typecheck

bench:
	python3 dev.py bench

clean:
	rm -rf .venv data .pytest_cache .mypy_cache .ruff_cache bench/results

bench-raft:
	python3 dev.py bench-raft

bench-distro:
	python3 dev.py bench-distro

# 20,000 instances beating every 5 s for 2 minutes; `python3 dev.py bench-capacity --instances 10000`
# for the half-core headline.
bench-capacity:
	python3 dev.py bench-capacity
# The node beside etcd 3.4 (Debian etcd-server, installed when missing), same wrk workloads.
bench-peers:
	python3 dev.py bench-peers
# waitress, granian and our asyncio server on the same tiny WSGI app (issue #11 item 2).
bench-serving:
	python3 dev.py bench-serving
# The Nacos 2.x gRPC edge (issue #12): throughput beside an empty-call floor, push latency, 2,000
# connected clients; `python3 dev.py bench-grpc --quick` for a short look.
bench-grpc:
	python3 dev.py bench-grpc
# Watching changes (issue #13): 5,000 event streams while 200 changes/s are applied (delivery
# latency, node CPU, memory per stream), and one service watched by polling, long-poll and a
# stream; `python3 dev.py bench-watch --quick` for a short look.
bench-watch:
	python3 dev.py bench-watch

cluster:
	python3 dev.py cluster
