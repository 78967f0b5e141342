# Thin aliases for dev.py, which needs nothing but Python 3.11.
.PHONY: run test bench bench-raft bench-distro cluster clean

run:
	python3 dev.py run

test:
	python3 dev.py test

bench:
	python3 dev.py bench

clean:
	rm -rf .venv data .pytest_cache .mypy_cache .ruff_cache bench/results

bench-raft:
	python3 dev.py bench-raft

bench-distro:
	python3 dev.py bench-distro

cluster:
	python3 dev.py cluster
