"""The one plug-in loader: a config value names a built-in (``rlaifv``, ``vlm``, ...) or ``python:module:Name``.

Naming a plug-in runs its code: ``python:my_pkg.my_module:MyLabeler`` imports ``my_pkg.my_module`` in the
driver (and whatever that module runs on import) with the driver's rights. Only name modules you trust.
Every plug-in is imported and checked when the config is loaded, before any stage runs, so a mistyped name
costs nothing.
"""
from __future__ import annotations

import importlib


def load_object(key: str, spec: str, built_in: dict[str, str]):
    """The object named by config key ``key``: a built-in name (mapped to ``module:Name``) or
    ``python:module:Name``; errors name the key and the spec."""
    path = built_in.get(spec)
    if path is None:
        if not spec.startswith("python:"):
            raise ValueError(f"{key}: expected {' | '.join(built_in)} | python:module:Class, got {spec!r}")
        path = spec.removeprefix("python:")
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise ValueError(f"{key}: {spec!r} is not of the form python:module:Class")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{key}: cannot load {spec!r} ({e})") from None
