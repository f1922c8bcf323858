"""The machinery behind `python -m utils.grade`, one idea per module.

* `extract` reads a submitted notebook as data (JSON + `ast`, nothing executed) and decides which top-level
  statements define the course's symbols;
* `child` runs in the child processes: a fork server that imports torch once, and one sandboxed process per
  notebook that executes those statements, runs the probes and streams their results back;
* `sandbox` is what such a process does to itself before it runs learner code: namespaces, rlimits, Landlock
  and an audit hook;
* `processes` is the grader's handle on them: the fork server, and each child's protocol and deadlines;
* `runner` grades one notebook: restarts children past statements that hang or crash, and judges the results
  with the course's own verdicts, in the grader's process, which never runs learner code;
* `report` writes grades.csv, one JSON file per submission and report.html.

Nothing here is imported by the notebooks or by `tests.check`.
"""
