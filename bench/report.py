"""Figures as rows of one table per stage, printed as they come and written to BENCHMARKS.md at the end."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Row:
    """One figure: Candor's value, the baseline's, their ratio (what we compare) and the target if any."""
    measure: str
    candor: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None

    def cells(self) -> list[str]:
        met = "" if self.met is None else ("yes" if self.met else "**no**")
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        return [self.measure, self.candor, self.baseline, ratio, self.target, met]


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        print(f"[bench] {self.title} | " + " | ".join(c for c in row.cells() if c), flush=True)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"[bench] {self.title} | note: {text}", flush=True)

    def markdown(self) -> str:
        header = ["Measure", "Candor", "Baseline", "Ratio", "Target", "Met"]
        lines = [f"## {self.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def document(sections: list[Section], machine: dict, versions: dict, command: str, seconds: float,
             preface: list[str]) -> str:
    """BENCHMARKS.md: the machine, date and command, then one table per stage."""
    head = [
        "# Candor benchmarks",
        "",
        "Written by `python -m bench` (bench/); rerun the command below to refresh every figure. Ratios are "
        "what we compare; absolute times are for context and depend on the machine and its load.",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_gib']} GiB RAM, no GPU; "
        f"Python {machine['python']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Command: `{command}` ({seconds / 60:.1f} min)",
    ]
    head += [f"- {p}" for p in preface]
    return "\n".join(head + [""] + [s.markdown() + "\n" for s in sections])
