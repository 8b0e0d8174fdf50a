# The README's two commands. Each sets up what it needs (venv, models) by itself.
PY := .venv/bin/python

.PHONY: setup demo test
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) iterate.py --config configs/shapes-rlaifv.yaml

test: setup
	$(PY) -m pytest -q -p no:cacheprovider --durations=25
