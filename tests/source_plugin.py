"""Preference-source plug-ins as a user would write them (``feedback.source: python:source_plugin:SuffixSource``
in tests): SuffixSource declares its own config section, read as ``feedback.plugin.<key>``."""
from typing import Annotated

from pydantic import Field

from feedback.pairs import contrast_groups
from feedback.sections import Section
from feedback.sources import Stage


class SuffixSection(Section):
    """feedback.plugin: the rejected answer is the reference plus ``suffix`` (a hallucinated object), for the
    first ``keep`` share of a round's prompts (by id)."""
    suffix: str = " There is also a red circle."
    keep: Annotated[float, Field(gt=0, le=1)] = 1.0


class SuffixSource:
    name, losses, section = "suffix", ("sigmoid",), SuffixSection

    def stages(self, cfg):
        knobs = cfg.feedback.plugin

        def pairs(ctx, _, prompts):
            kept = sorted(prompts, key=lambda p: p["id"])[:round(knobs.keep * len(prompts))]
            return contrast_groups({p["id"]: p["reference"] for p in kept},
                                   {p["id"]: [p["reference"] + knobs.suffix] for p in kept}, ctx.prompts, self.name,
                                   ctx.round)
        return [Stage("pairs", pairs)]  # the engine gives it pairs_schema: the end-to-end test trains on it


class BareSource(SuffixSource):
    """A plug-in that declares no section: it reads no feedback.plugin keys."""
    name, section = "bare", None

    def stages(self, cfg):
        def pairs(ctx, _, prompts):
            chosen, rejected = {p["id"]: p["reference"] for p in prompts}, {p["id"]: [p["question"]] for p in prompts}
            return contrast_groups(chosen, rejected, ctx.prompts, self.name, ctx.round)
        return [Stage("pairs", pairs)]


class LabelerKeysSource(SuffixSource):
    """Reads the generic feedback.labeler* keys and no other: only those and its section bind its runs."""
    shared_keys = ("labeler",)


class MappingSectionSource(BareSource):
    """Declares a section that is not a feedback.sections.Section."""
    section = dict
