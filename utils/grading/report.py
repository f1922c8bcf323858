"""The grader's outputs: grades.csv, one JSON file per submission, and report.html.

Every string that comes from a submission (its file name, its error messages) is learner-controlled: the HTML
escapes all of it and loads nothing from the network; the CSV quotes it and defuses spreadsheet formulas.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from utils.grading.runner import STATUS_RANK, Result

STATUSES = list(STATUS_RANK)
COLOURS = {"tampered": "#000000", "pass": "#2e7d32", "fail": "#c62828", "error": "#ef6c00", "timeout": "#6a1b9a",
           "not_implemented": "#757575", "missing": "#bdbdbd"}  # fmt: skip
SYMBOLS = {"tampered": "☠", "pass": "✓", "fail": "✗", "error": "!", "timeout": "⏱", "not_implemented": "…",
           "missing": "–"}  # fmt: skip


@dataclass
class Graded:
    """One submission's row: its name as the learner gave it, and a result for every exercise."""

    name: str
    results: dict[str, Result]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sandbox: list[str] = field(default_factory=list)  # the sandbox layers its children applied
    slug: str = ""  # file name (without .json) of its JSON file in the output folder

    @property
    def total(self) -> int:
        return sum(result.points for result in self.results.values())


def slugs(names: list[str]) -> list[str]:
    """A distinct, safe file name for every submission name (they may hold spaces, quotes, `<`, newlines...)."""
    taken: set[str] = set()
    found = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "submission"
        slug, n = base, 1
        while slug.lower() in taken or slug.lower() in ("grades", "report"):
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug.lower())
        found.append(slug)
    return found


def spreadsheet_safe(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas; a leading apostrophe keeps them text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_json(out: Path, graded: Graded, exercises: dict, info: dict) -> None:
    data = {
        "submission": graded.name,
        "total": graded.total,
        "max_total": sum(exercise.points for exercise in exercises.values()),
        "exercises": {
            exercise_id: {
                "status": result.status,
                "message": result.message,
                "points": result.points,
                "max_points": exercises[exercise_id].points,
                "notebook": result.notebook,
            }
            for exercise_id, result in graded.results.items()
        },
        "notes": graded.notes,
        "seconds": round(graded.seconds, 2),
        "sandbox": graded.sandbox,
        "run": info,
    }
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    (out / f"{graded.slug}.json").write_text(text, "utf-8", errors="replace")  # learner text may hold surrogates


def write_csv(out: Path, rows: list[Graded], exercises: dict) -> None:
    with open(out / "grades.csv", "w", newline="", encoding="utf-8", errors="replace") as file:
        writer = csv.writer(file)
        writer.writerow(["submission", *exercises, "total"])
        for row in rows:
            writer.writerow([spreadsheet_safe(row.name), *(row.results[i].points for i in exercises), row.total])


CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: center; }
th { background: #f5f5f5; } td.name { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
.learners th.name, .learners td.name { position: sticky; left: 0; background: #fff; z-index: 1; width: 14em;
  min-width: 14em; max-width: 14em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.learners th.total, .learners td.total { position: sticky; left: 15.5em; background: #fff; z-index: 1;
  font-weight: bold; }
.learners th.name, .learners th.total { background: #f5f5f5; }
.learners td.section { white-space: nowrap; font-size: 12px; }
.bar { background: #eee; width: 120px; height: 10px; display: inline-block; vertical-align: middle; }
.bar span { background: #2e7d32; height: 10px; display: block; }
pre { white-space: pre-wrap; background: #fafafa; border: 1px solid #eee; padding: 6px; }
pre { max-height: 20em; overflow: auto; }
details { margin: .4em 0; } .status { color: white; border-radius: 3px; padding: 0 4px; }
"""

LIMIT_WORDS = "over the limit"  # in the message of a child stopped for holding too much memory or disk


def badge(status: str) -> str:
    return f'<span class="status" style="background:{COLOURS[status]}">{SYMBOLS[status]} {status}</span>'


def incidents(row: Graded) -> dict[str, list[str]]:
    """What an instructor should look at in a submission, apart from wrong answers: exercise ids (or notes) where
    it tampered, timed out, or hit a memory or disk limit."""
    found: dict[str, list[str]] = {"tampered": [], "timed out": [], "hit a limit": []}
    for exercise_id, result in row.results.items():
        if result.status == "tampered":
            found["tampered"].append(exercise_id)
        elif result.status == "timeout":
            found["timed out"].append(exercise_id)
        if LIMIT_WORDS in result.message:
            found["hit a limit"].append(exercise_id)
    if any(LIMIT_WORDS in note for note in row.notes) and not found["hit a limit"]:
        found["hit a limit"].append("a statement of the notebook")
    return {kind: ids for kind, ids in found.items() if ids}


def write_html(
    out: Path,
    rows: list[Graded],
    exercises: dict,
    info: dict,
    sections: dict[str, str] | None = None,
    numbers: dict[str, str] | None = None,
) -> None:
    """The report: the exercises' pass rates, then the learners by section (names and totals stay in view while the
    sections scroll), the submissions that need a look, and every message."""
    e = html.escape
    sections = sections or {i: i.split(".")[0] for i in exercises}
    numbers = numbers or {}
    groups: dict[str, list[str]] = {}
    for exercise_id in exercises:
        groups.setdefault(sections[exercise_id], []).append(exercise_id)
    max_total = sum(exercise.points for exercise in exercises.values())
    parts = [
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Grades</title><style>{CSS}</style></head><body>",
        f"<h1>Grades: {len(rows)} submissions</h1>",
        "<p>" + " · ".join(f"{e(str(key))}: {e(str(value))}" for key, value in info.items()) + "</p>",
    ]
    flagged = [(row, incidents(row)) for row in rows]
    flagged = [(row, found) for row, found in flagged if found]
    parts.append("<h2>Needs a look</h2>")
    if flagged:
        parts.append("<p>Submissions that tampered with the checks, ran out of time or hit a memory or disk limit "
                     "(wrong answers are not listed here):</p><ul>")  # fmt: skip
        for row, found in flagged:
            what = "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in found.items())
            parts.append(f"<li><b>{e(row.name)}</b>: {e(what)}</li>")
        parts.append("</ul>")
    else:
        parts.append("<p>No submission tampered, timed out or hit a limit.</p>")
    parts.append("<h2>Learners</h2><div class='scroll'><table class='learners'><tr><th class='name'>submission</th>")
    parts.append(f"<th class='total'>total / {max_total}</th>")
    for section, ids in groups.items():
        number = numbers.get(section, "")
        points = sum(exercises[i].points for i in ids)
        parts.append(f"<th title='{e(', '.join(ids))}'>{e(number)} {e(section.split('.')[-1])}<br>/ {points}</th>")
    parts.append("</tr>")
    for row in rows:
        cells = []
        for ids in groups.values():
            earned = sum(row.results[i].points for i in ids)
            symbols = "".join(
                f"<span title='{e(i)}: {e(result.message[:300])}' style='color:{COLOURS[result.status]}'>"
                f"{SYMBOLS[result.status]}</span>"
                for i, result in ((i, row.results[i]) for i in ids)
            )
            cells.append(f"<td class='section'>{earned} {symbols}</td>")
        parts.append(
            f"<tr><td class='name' title='{e(row.name)}'>{e(row.name)}</td><td class='total'>{row.total}</td>"
            + "".join(cells)
            + "</tr>"
        )
    parts.append("</table></div><p>" + " ".join(f"{SYMBOLS[s]} {e(s)}" for s in STATUSES) + "</p>")
    parts.append(
        "<h2>Exercises</h2><table><tr><th>section</th><th>exercise</th><th>points</th><th>pass rate</th>"
        + "".join(f"<th>{e(status)}</th>" for status in STATUSES)
        + "</tr>"
    )
    for section, ids in groups.items():
        for exercise_id in ids:
            counts = Counter(row.results[exercise_id].status for row in rows)
            rate = counts["pass"] / len(rows) if rows else 0.0
            parts.append(
                f"<tr><td>{e(numbers.get(section, section))}</td><td class='name'>{e(exercise_id)}</td>"
                f"<td>{exercises[exercise_id].points}</td>"
                f"<td><span class='bar'><span style='width:{100 * rate:.0f}%'></span></span> {100 * rate:.0f}%</td>"
                + "".join(f"<td>{counts[status]}</td>" for status in STATUSES)
                + "</tr>"
            )
    parts.append("</table><h2>Messages</h2>")
    for row in rows:
        parts.append(f"<details><summary>{e(row.name)}: {row.total} / {max_total}</summary><ul>")
        for exercise_id in exercises:
            result = row.results[exercise_id]
            source = f" ({e(result.notebook)})" if result.notebook else ""
            parts.append(f"<li>{e(exercise_id)} {badge(result.status)}{source}<pre>{e(result.message)}</pre></li>")
        parts.append("</ul>")
        if row.notes:
            parts.append("<p>Notes</p><pre>" + e("\n".join(row.notes)) + "</pre>")
        parts.append("</details>")
    parts.append("</body></html>\n")
    (out / "report.html").write_text("\n".join(parts), "utf-8", errors="replace")
