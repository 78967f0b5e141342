PY ?= .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8848

.PHONY: venv run test lint bench clean

venv: .venv/.done
.venv/.done: requirements.txt requirements-dev.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements-dev.txt
	touch .venv/.done

run: venv
	$(PY) manage.py runnode --host $(HOST) --port $(PORT) --data-dir data

lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy .

test: venv lint
	$(PY) -m pytest -n 2 --dist loadgroup

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf .venv data .pytest_cache .mypy_cache .ruff_cache
