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
.bar { background: #eee; width: 120px; height: 10px; display: inline-block; vertical-align: middle; }
.bar span { background: #2e7d32; height: 10px; display: block; }
pre { white-space: pre-wrap; background: #fafafa; border: 1px solid #eee; padding: 6px; }
pre { max-height: 20em; overflow: auto; }
details { margin: .4em 0; } .status { color: white; border-radius: 3px; padding: 0 4px; }
"""


def badge(status: str) -> str:
    return f'<span class="status" style="background:{COLOURS[status]}">{SYMBOLS[status]} {status}</span>'


def write_html(out: Path, rows: list[Graded], exercises: dict, info: dict) -> None:
    e = html.escape
    max_total = sum(exercise.points for exercise in exercises.values())
    parts = [
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Grades</title><style>{CSS}</style></head><body>",
        f"<h1>Grades: {len(rows)} submissions</h1>",
        "<p>" + " · ".join(f"{e(str(key))}: {e(str(value))}" for key, value in info.items()) + "</p>",
        "<h2>Exercises</h2><table><tr><th>exercise</th><th>points</th><th>pass rate</th>"
        + "".join(f"<th>{e(status)}</th>" for status in STATUSES)
        + "</tr>",
    ]
    for exercise_id, exercise in exercises.items():
        counts = Counter(row.results[exercise_id].status for row in rows)
        rate = counts["pass"] / len(rows) if rows else 0.0
        parts.append(
            f"<tr><td class='name'>{e(exercise_id)}</td><td>{exercise.points}</td>"
            f"<td><span class='bar'><span style='width:{100 * rate:.0f}%'></span></span> {100 * rate:.0f}%</td>"
            + "".join(f"<td>{counts[status]}</td>" for status in STATUSES)
            + "</tr>"
        )
    parts.append("</table><h2>Learners</h2><table><tr><th>submission</th>")
    parts += [f"<th>{e(exercise_id)}</th>" for exercise_id in exercises]
    parts.append(f"<th>total / {max_total}</th></tr>")
    for row in rows:
        cells = "".join(
            f"<td title='{e(row.results[i].message[:300])}' style='color:{COLOURS[row.results[i].status]}'>"
            f"{SYMBOLS[row.results[i].status]}</td>"
            for i in exercises
        )
        parts.append(f"<tr><td class='name'>{e(row.name)}</td>{cells}<td>{row.total}</td></tr>")
    parts.append("</table><p>" + " ".join(f"{SYMBOLS[s]} {e(s)}" for s in STATUSES) + "</p><h2>Messages</h2>")
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
