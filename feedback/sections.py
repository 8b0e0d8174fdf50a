"""The base of every config section, here at the feedback layer so the preference sources and the labeler can
declare their own section beside their code (``BPO.section`` in feedback/bpo.py, ...); engine/config.py
composes them into ``feedback``, one nested section per built-in source (``feedback.bpo.noise_step``).

A section refuses unknown keys, validates every assignment and refuses ``inf``/``nan`` anywhere. A check
that spans a section's keys raises ``ValueError("<key>: why")`` from a ``model_validator(mode="after")``, the
key named relative to the section: engine/config.py prefixes the section's path.
"""
from __future__ import annotations

from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
DiffusionStep = Annotated[int, Field(ge=0, lt=1000)]  # a step of the 1000-step diffusion schedule


class Section(BaseModel):
    """A config section: unknown keys refused, every assignment validated, no inf or nan anywhere."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _parse_command_line(cls, data):
        """A bool is not a number (YAML's ``true`` for a seed); a comma-separated string is a list; "none" is
        None; a string for a mapping is read as YAML flow (``{worker: 1}``)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue
            kind = str(field.annotation)
            if isinstance(value, bool) and field.annotation in (int, float):
                raise ValueError(f"{name}: expected {field.annotation.__name__}, got bool {value!r}")
            if isinstance(value, str) and kind.startswith("list["):
                data[name] = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, str) and kind.startswith("dict["):
                try:
                    data[name] = yaml.safe_load(value)
                except yaml.YAMLError:
                    raise ValueError(f"{name}: cannot read {value!r} as a mapping ({{name: value, ...}})") from None
            if isinstance(value, str) and "None" in kind and value.strip().lower() in ("none", "null", ""):
                data[name] = None
        return data


def nest_old_keys(values: dict, old_keys: dict[str, tuple[str, ...]], section: str) -> dict:
    """Section ``section``'s mapping ``values`` with each flat key of an older release moved to the keys it became
    (``old_keys``: old name -> dotted keys relative to the section; one old key may set several), so a run
    directory's saved config.yaml of that release still loads. A mapping that sets both an old key and a key it
    became is refused: which one was meant is a guess."""
    values = dict(values)
    for old in [key for key in values if key in old_keys]:
        value = values.pop(old)
        for new in old_keys[old]:
            *parents, name = new.split(".")
            inner = values
            for depth, part in enumerate(parents):
                below = inner.get(part)
                if below is not None and not isinstance(below, dict):
                    where = ".".join([section, *parents[:depth + 1]])
                    raise ValueError(f"{where}: expected a mapping of keys, got {below!r}")
                inner[part] = dict(below or {})  # a copy: the caller's mapping is left as it was
                inner = inner[part]
            if name in inner:
                raise ValueError(f"{section}.{old}: also given as {section}.{new}; keep only the latter")
            inner[name] = value
    return values
