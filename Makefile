# The README's two commands. Each sets up what it needs (venv, models) by itself.
PY := .venv/bin/python

.PHONY: setup demo test
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m engine.evaluate

test: setup
	$(PY) -m pytest -q -p no:cacheprovider
