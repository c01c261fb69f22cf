"""The ``leaderboard`` command: rank validated submissions per benchmark and overall, with CIs and tie groups.

Every submission is validated first (``validate``: schema, recomputed metrics, local data where present);
one that fails stops the command, naming the file and the problem. Submissions of one benchmark must share
its docs hash and conventions (else refused, naming both). Per benchmark, entries are sorted by the
headline metric (accuracy or Pearson) and carry its 95% CI. Overall: the mean of the headline metrics over
every benchmark of the leaderboard, for the entries that have all of them (the others are listed unranked,
with what they miss), with a 95% CI by the normal approximation from the benchmarks' CI half-widths
(benchmarks independent: ``sqrt(sum h_t^2) / T``).

Ties: ``rank`` is 1 + the number of entries whose CI lies entirely above this entry's CI (entries no other
beats significantly share rank 1). ``group`` (significance group) walks the entries best first: an entry
joins the current group when its CI overlaps the CI of the group's first entry, else it opens the next
group; entries of one group are statistically tied with its leader. Writes leaderboard.md, .json, .html.
"""

from __future__ import annotations

import argparse
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

HELP = "rank validated submissions with CIs and tie groups"
OVERALL = "overall"
Z95 = 1.959963984540054


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def overlaps(a: Mapping, b: Mapping) -> bool:
    """Whether the CIs of two entries overlap; an entry without a CI overlaps everything (it proves nothing)."""
    if not all(_finite(e.get(k)) for e in (a, b) for k in ("ci_low", "ci_high")):
        return True
    return a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]


def rank_entries(entries: Sequence[Mapping]) -> list[dict]:
    """Entries (``name``, ``value``, ``ci_low``, ``ci_high``, ...) sorted best first, with ``rank`` and ``group``.

    Entries without a finite value come last, unranked (``rank`` and ``group`` None).
    """
    scored = sorted(
        (dict(e) for e in entries if _finite(e.get("value"))), key=lambda e: (-e["value"], e["name"])
    )
    rest = [dict(e, rank=None, group=None) for e in entries if not _finite(e.get("value"))]
    for e in scored:
        better = sum(
            1
            for o in scored
            if o is not e
            and _finite(o.get("ci_low"))
            and _finite(e.get("ci_high"))
            and o["ci_low"] > e["ci_high"]
        )
        e["rank"] = 1 + better
    group, leader = 0, None
    for e in scored:
        if leader is None or not overlaps(leader, e):
            group, leader = group + 1, e
        e["group"] = group
    return scored + rest


def _entry_name(sub: Mapping, path: str, taken: set[str]) -> str:
    name = str(sub["model"]["name"])
    if name in taken:
        name = f"{name} ({Path(path).stem})"
    taken.add(name)
    return name


def build_leaderboard(
    subs: Sequence[tuple[str, Mapping]], verified: Mapping[str, bool] | None = None
) -> dict:
    """The leaderboard of ``(path, submission)`` pairs: per benchmark and overall ranked entries."""
    from lmms_eval_autorater.tasks.catalog import TASKS
    from lmms_eval_autorater.vocabulary import COUNT_METRICS

    verified = verified or {}
    taken: set[str] = set()
    names = [_entry_name(sub, path, taken) for path, sub in subs]
    benchmarks: dict[str, list[dict]] = {}
    reference: dict[str, tuple[str, str, str]] = {}
    for (path, sub), name in zip(subs, names):
        for task, entry in sub["tasks"].items():
            key = (entry["docs_hash"], entry["conventions"])
            if task in reference and reference[task][:2] != key:
                other = reference[task]
                what = "docs_hash" if other[0] != key[0] else "conventions"
                raise ValueError(
                    f"task {task}: {path} and {other[2]} differ in {what} "
                    f"({key[0 if what == 'docs_hash' else 1]!r} vs {other[0 if what == 'docs_hash' else 1]!r}): "
                    "not one benchmark, not ranked together"
                )
            reference.setdefault(task, (*key, path))
            m = entry["metrics"]
            metric = entry["metric"]
            benchmarks.setdefault(task, []).append(
                {
                    "name": name,
                    "file": path,
                    "verified": bool(verified.get(path, False)),
                    "metric": metric,
                    "value": m.get(metric),
                    "ci_low": m.get(f"{metric}_ci_low"),
                    "ci_high": m.get(f"{metric}_ci_high"),
                    "n_scored": m.get("n_scored"),
                    "n_docs": entry["n_docs"],
                    "failures": {k: m.get(k) for k in COUNT_METRICS if k != "n_scored"},
                    "scoring": scoring_note(sub),
                }
            )
    order = [t for t in TASKS if t in benchmarks]
    overall = []
    for (path, sub), name in zip(subs, names):
        rows = {t: next(e for e in benchmarks[t] if e["name"] == name) for t in order if t in sub["tasks"]}
        missing = [t for t in order if t not in rows]
        values = [rows[t]["value"] for t in order if t in rows]
        halves = [
            (rows[t]["ci_high"] - rows[t]["ci_low"]) / 2
            for t in order
            if t in rows and _finite(rows[t]["ci_low"]) and _finite(rows[t]["ci_high"])
        ]
        value = low = high = None
        if not missing and all(_finite(v) for v in values):
            value = sum(values) / len(values)
            if len(halves) == len(values):
                half = math.sqrt(sum(h * h for h in halves)) / len(values)
                low, high = value - half, value + half
        overall.append(
            {
                "name": name,
                "file": path,
                "verified": bool(verified.get(path, False)),
                "metric": "mean of " + ", ".join(f"{t} {rows[t]['metric']}" for t in order if t in rows),
                "value": value,
                "ci_low": low,
                "ci_high": high,
                "missing": missing,
            }
        )
    return {
        "aggregation": (
            f"overall = mean of the headline metrics over {', '.join(order)} (entries having all of them); "
            "95% CI by the normal approximation from each benchmark's CI half-width, benchmarks independent"
        ),
        "ties": (
            "rank = 1 + entries whose CI lies entirely above; group: best first, an entry joins the current "
            "group when its CI overlaps the CI of the group's first entry"
        ),
        "benchmarks": {t: rank_entries(benchmarks[t]) for t in order},
        OVERALL: rank_entries(overall),
    }


def scoring_note(sub: Mapping) -> str:
    """How a judge's numbers were scored when not the paper's protocol (``scoring=expected``, ``samples=N``);
    empty for integer verdicts, one answer each (and for submissions from before these fields)."""
    judge = sub.get("judge") or {}
    parts = []
    if judge.get("scoring", "argmax") != "argmax":
        parts.append(f"scoring={judge['scoring']}")
    if int(judge.get("samples", 1) or 1) != 1:
        parts.append(f"samples={judge['samples']}")
    return ", ".join(parts)


def _fmt(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _finite(x) else "–"


def _ci(e: Mapping) -> str:
    return f"[{_fmt(e.get('ci_low'))}, {_fmt(e.get('ci_high'))}]" if _finite(e.get("ci_low")) else "–"


def _sections(board: Mapping) -> list[tuple[str, list[dict]]]:
    return [(OVERALL, board[OVERALL]), *board["benchmarks"].items()]


def to_markdown(board: Mapping) -> str:
    """The leaderboard as markdown: one table per benchmark and one overall (names and notes through
    ``cells.md_cell``: a submitted name cannot add columns or inject HTML)."""
    from lmms_eval_autorater.cells import md_cell

    lines = ["# Leaderboard", "", f"Aggregation: {board['aggregation']}.", "", f"Ties: {board['ties']}.", ""]
    for title, rows in _sections(board):
        lines += [
            f"## {md_cell(title)}",
            "",
            "| rank | group | model | value | 95% CI | verified | notes |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in rows:
            notes = ""
            if e.get("missing"):
                notes = "missing " + ", ".join(e["missing"])
            elif "n_scored" in e:
                fails = ", ".join(f"{k} {int(v)}" for k, v in e["failures"].items() if _finite(v) and v)
                notes = f"n_scored {_fmt(e['n_scored'], 0)} of {e['n_docs']}" + (
                    f"; {fails}" if fails else ""
                )
                if e.get("scoring"):
                    notes = f"{e['scoring']}; {notes}"
            lines.append(
                f"| {e['rank'] or '–'} | {e['group'] or '–'} | {md_cell(e['name'])} | {_fmt(e['value'])} | {_ci(e)} | "
                f"{'yes' if e['verified'] else 'no'} | {md_cell(notes)} |"
            )
        lines.append("")
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; } th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.g0 { background: #ffffff; } tr.g1 { background: #eef4fb; } .meta { color: #555; max-width: 60em; }
"""


def to_html(board: Mapping) -> str:
    """The leaderboard as a static self-contained HTML page (rows of one tie group share a shade)."""
    e_ = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Leaderboard</title>',
        f"<style>{_STYLE}</style></head><body><h1>Leaderboard</h1>",
        f'<p class="meta">Aggregation: {e_(board["aggregation"])}.</p>',
        f'<p class="meta">Ties: {e_(board["ties"])}.</p>',
    ]
    for title, rows in _sections(board):
        parts.append(
            f"<h2>{e_(title)}</h2><table><tr><th>rank</th><th>group</th><th>model</th><th>value</th>"
            "<th>95% CI</th><th>verified</th><th>n_scored</th></tr>"
        )
        for e in rows:
            shade = f"g{(e['group'] or 0) % 2}"
            n = (
                f"{_fmt(e.get('n_scored'), 0)} / {e['n_docs']}"
                if "n_docs" in e
                else e_(", ".join(e.get("missing") or []))
            )
            parts.append(
                f'<tr class="{shade}"><td class="num">{e["rank"] or "–"}</td><td class="num">{e["group"] or "–"}</td>'
                f"<td>{e_(e['name'])}{' (' + e_(e['scoring']) + ')' if e.get('scoring') else ''}</td>"
                f'<td class="num">{_fmt(e["value"])}</td><td class="num">{_ci(e)}</td>'
                f"<td>{'yes' if e['verified'] else 'no'}</td><td>{n}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``leaderboard`` command's arguments."""
    parser.add_argument("submissions", nargs="+", metavar="SUB", help="submission JSON files")
    parser.add_argument("--output", required=True, help="folder for leaderboard.md, .json and .html")
    parser.add_argument(
        "--no-local-data",
        action="store_true",
        help="validate without $AUTORATER_DATA_DIR (every entry is then marked unverified)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``leaderboard`` command; returns the exit code."""
    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.reports.submission import write_json
    from lmms_eval_autorater.reports.validate import load_submission, validate_submission

    subs, verified = [], {}
    for path in args.submissions:
        try:
            sub = load_submission(path)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        outcome = validate_submission(sub, path, use_local_data=not args.no_local_data)
        if not outcome.ok:
            raise UsageError(f"{path} does not validate: {outcome.problems[0]}")
        verified[path] = not outcome.unchecked
        for note in outcome.unchecked:
            print(f"{path}: unverified: {note}")
        subs.append((path, sub))
    try:
        board = build_leaderboard(subs, verified)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "leaderboard.json", board)
    for name, text in (("leaderboard.md", to_markdown(board)), ("leaderboard.html", to_html(board))):
        tmp = out / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    print(to_markdown(board))
    print(f"wrote {out / 'leaderboard.md'}, {out / 'leaderboard.json'}, {out / 'leaderboard.html'}")
    return 0
