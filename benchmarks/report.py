"""Markdown for the results: a summary in the shape of the issue's table, the budgets with verdicts, and one detail
table per workload (median, p90, n, ratios to every peer and raw client, sink counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import Series, median, quantile

X = "\u00d7"  # the multiplication sign of the ratios

#: Reference columns for the ratios, in this order.
REFERENCES = ["esmtp-1.2", "msmtp", "nullmailer", "aiosmtplib", "smtplib", "floor"]
#: Column order of the summary table.
SUBJECT_ORDER = ["esmtp-py", "esmtp-dkim", "esmtp-dkim-ed", "esmtp-warm", "esmtp-dkim-warm", "esmtp-first",
                 "esmtp-1.2", "msmtp", "nullmailer", "aiosmtplib", "smtplib", "floor"]


@dataclass
class Verdict:
    """One budget and how the esmtp-py figure of this run compares with it."""

    budget: str
    measured: str
    status: str  # "PASS" | "FAIL" | "n/a"


@dataclass
class View:
    """One metric of one workload across subjects."""

    key: str
    title: str
    unit: str  # "ms", "msg/s", "MB", "s"
    scale: float = 1.0  # stored value x scale = displayed value (seconds -> ms: 1000)
    higher_is_better: bool = False
    series: dict[str, Series] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # extra column title -> Series.extra key (median shown)

    def med(self, key: str) -> float | None:
        s = self.series.get(key)
        return median(s.values) if s is not None and s.usable else None


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
    elif unit == "msg/s":
        text = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    elif unit == "MB":
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def _num(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _short(text: str, limit: int = 90) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def na(series: Series) -> str:
    """The cell of a subject without a figure: an operation it lacks, or the error that stopped it."""
    if series.skipped:
        return f"— ({_short(series.skipped)})"
    reason = series.error or (series.failures[0] if series.failures else "no result")
    return f"n/a (error: {_short(reason)})"


def cell(view: View, key: str, with_note: bool = True) -> str:
    s = view.series.get(key)
    if s is None or s.skipped:
        return "—"  # the detail table gives the reason
    if not s.usable:
        return na(s)
    text = fmt(median(s.values) * view.scale, view.unit)
    if with_note and s.note:
        text += f" ({s.note})"
    return text


def ratio(view: View, key: str, ref: str) -> str:
    if key == ref:
        return "1"
    a, b = view.med(key), view.med(ref)
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}{X}"


def summary_table(views: list[View], labels: dict[str, str]) -> list[str]:
    cols = [k for k in SUBJECT_ORDER if any(k in v.series for v in views)]
    lines = ["| workload | " + " | ".join(labels.get(k, k) for k in cols) + " | budget verdict |",
             "|---" * (len(cols) + 2) + "|"]
    for view in views:
        verdicts = "; ".join(f"{v.status}" for v in view.verdicts) or "—"
        lines.append(f"| {view.title} | " + " | ".join(cell(view, k) for k in cols) + f" | {verdicts} |")
    return lines


def budget_table(views: list[View]) -> list[str]:
    lines = ["| budget | esmtp-py in this run | verdict |", "|---|---|---|"]
    for view in views:
        for v in view.verdicts:
            lines.append(f"| {v.budget} | {v.measured} | **{v.status}** |")
    return lines


def detail_table(view: View, labels: dict[str, str]) -> list[str]:
    keys = [k for k in SUBJECT_ORDER if k in view.series]
    refs = [r for r in REFERENCES if r in view.series]
    head = ["subject", "median", "p90", "n", *[f"÷ {labels.get(r, r)}" for r in refs], *view.columns, "notes"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for key in keys:
        s = view.series[key]
        if s.usable:
            tail = quantile(s.values, 0.1 if view.higher_is_better else 0.9)  # the slow tail either way
            row = [fmt(median(s.values) * view.scale, view.unit), fmt(tail * view.scale, view.unit),
                   str(len(s.values))]
        else:
            row = [na(s), "—", "0"]
        row += [ratio(view, key, r) for r in refs]
        for extra_key in view.columns.values():
            vals = s.extra.get(extra_key)
            row.append(_num(median(vals)) if vals else "—")
        notes = [s.note] if s.note else []
        if s.failures and s.usable:
            notes.append(f"{len(s.failures)} failed run(s): {_short(s.failures[0], 60)}")
        row.append("; ".join(notes))
        lines.append(f"| {labels.get(key, key)} | " + " | ".join(row) + " |")
    return lines


def render(header: list[str], views: list[View], labels: dict[str, str], footer: list[str]) -> str:
    out = [*header, "", "## Summary (medians)", "", *summary_table(views, labels), ""]
    out += ["## Budgets", "", *budget_table(views), ""]
    out += ["## Details", "",
            "Ratios are this subject's median ÷ the column's median: for times lower is better, "
            "for msg/s higher is better. p90 is the slow tail: the 90th percentile of times, and for msg/s the rate "
            "of the 90th-percentile round (the 10th percentile of rates).", ""]
    for view in views:
        out += [f"### {view.title}", "", *detail_table(view, labels), ""]
        out += [f"- {note}" for note in view.notes]
        if view.notes:
            out.append("")
    out += footer
    return "\n".join(out).rstrip() + "\n"
