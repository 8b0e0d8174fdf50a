"""``python -m evaluation --model M [--adapter A] --suite S [--config C] [key=value ...]``.

An entry point, like iterate.py, that sits on top of the layers: scoring a checkpoint needs the engine's model
serving, so this module hands the command line to engine.evaluate.checkpoint_main, the code a run's eval stage
uses. No module of evaluation/ imports it, and it imports nothing of evaluation/ itself: the package stays
below the engine (docs/benchmarks.md, "The standalone evaluator").
"""
import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("engine.evaluate").checkpoint_main())
