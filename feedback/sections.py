"""The base of every config section, here at the feedback layer so the preference sources and the labeler can
declare their own section beside their code (``BPO.section`` in feedback/bpo.py, ...); engine/config.py
composes them into ``feedback``, one nested section per built-in source (``feedback.bpo.noise_step``), and
validates a plug-in source's own section as ``feedback.plugin``.

A section refuses unknown keys, validates every assignment and refuses ``inf``/``nan`` anywhere. A check
that spans a section's keys raises ``ValueError("<key>: why")`` from a ``model_validator(mode="after")``, the
key named relative to the section: :func:`validated` turns any error into one message naming the full key.
:func:`nest_old_keys` is the one way an older release's flat keys reach the keys they became.
"""
from __future__ import annotations

from typing import Annotated, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class ByRound(Section):
    """A section whose ``ROUND_KEYS`` may change from a round on: ``from_round: {2: {key: value}}`` (rounds count
    from 1; a later round's entry wins over an earlier one); ``for_round(k)`` is the section round ``k`` runs with."""
    ROUND_KEYS: ClassVar[tuple[str, ...]] = ()
    from_round: dict[int, dict] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_from_round(self):
        for k, changes in self.from_round.items():
            unknown = set(changes) - set(self.ROUND_KEYS)
            if k < 1 or unknown:
                raise ValueError(f"from_round.{k}: " + (f"{', '.join(sorted(unknown))} cannot change by round (only "
                                 f"{', '.join(self.ROUND_KEYS)} can)" if unknown else "rounds count from 1"))
            typed = self._with(changes, f"from_round.{k}")
            changes.update({key: getattr(typed, key) for key in changes})  # "2.0" from a command line is 2.0
        return self

    def for_round(self, k: int):
        """The keys round ``k`` runs with (this section without ``from_round``)."""
        return self._with({key: value for r in sorted(self.from_round) if r <= k
                           for key, value in self.from_round[r].items()}, "from_round")

    def _with(self, changes: dict, prefix: str):
        """This section without ``from_round``, ``changes`` over it, validated (errors name ``prefix``)."""
        return validated(type(self), {**self.model_dump(exclude={"from_round"}), **changes}, prefix)


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


def error_message(error: dict, prefix: str, section: type[Section]) -> str:
    """One pydantic error of ``section`` (whose keys sit under the dotted ``prefix``) as ``key: what is wrong``."""
    loc = [str(part) for part in error["loc"]]
    key, owner = ".".join([prefix, *loc]), _owner(section, loc)
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (known in {key.rpartition('.')[0]}: {', '.join(owner.model_fields)})"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than", "finite_number"):
        field = owner.model_fields.get(loc[-1])  # None for a number inside a mapping (custom_resources)
        return f"{key}: must be {_range(field, kind)}" if field else f"{key}: {error['msg']}"
    if kind == "literal_error":
        return f"{key}: must be one of {ctx['expected']}, got {value!r}"
    if kind == "int_from_float":
        return f"{key}: expected int, got float {value!r}"
    if kind.endswith("_parsing"):
        return f"{key}: cannot parse {value!r} as {kind.split('_')[0]}"
    if kind.endswith("_type"):
        return f"{key}: expected {kind.split('_')[0]}, got {type(value).__name__} {value!r}"
    if kind == "value_error":  # a field's own check, or a (nested) section's own check, which names the key
        field = loc and owner.model_fields.get(loc[-1])
        nested = field and is_section(field.annotation)
        return f"{key}: {ctx.get('error')}" if field and not nested else f"{key}.{ctx.get('error', error['msg'])}"
    return f"{key}: {error['msg']}"


def is_section(annotation) -> bool:
    """Whether ``annotation`` is a Section class (a nested section), not a value."""
    return isinstance(annotation, type) and issubclass(annotation, Section)


def _owner(section: type[Section], loc: list[str]) -> type[Section]:
    """The section that holds the last key of ``loc`` (``section`` itself, or a nested one: ``bpo`` in feedback)."""
    owner = section
    for part in loc[:-1]:
        field = owner.model_fields.get(part)
        if field is None or not is_section(field.annotation):
            break
        owner = field.annotation
    return owner


def _range(field, kind: str) -> str:
    """What a numeric field accepts: ">= 1", "in [0, 5]", "in (0, 1)", or "a finite number"."""
    limits = {type(m).__name__: m for m in field.metadata}
    low = ("[", limits["Ge"].ge) if "Ge" in limits else ("(", limits["Gt"].gt) if "Gt" in limits else None
    high = (limits["Le"].le, "]") if "Le" in limits else (limits["Lt"].lt, ")") if "Lt" in limits else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low or high:
        return f"{'>=' if low and low[0] == '[' else '>' if low else '<=' if high[1] == ']' else '<'} " \
               f"{low[1] if low else high[0]}" + (" (a finite number)" if kind == "finite_number" else "")
    return "a finite number"


def validated(section: type[Section], values, prefix: str) -> Section:
    """``values`` validated as ``section``, whose keys sit under the dotted ``prefix``; ValueError names the key."""
    if not isinstance(values, dict):
        raise ValueError(f"{prefix}: expected a mapping of keys, got {values!r}")
    try:
        return section.model_validate(values)
    except ValidationError as e:
        raise ValueError(error_message(e.errors()[0], prefix, section)) from None
