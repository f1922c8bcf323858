"""Shared fixtures: headless progress bars, the code cells of a generated notebook as a namespace, and `no_show`."""

import ast
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("COURSE_HEADLESS", "1")

ROOT = Path(__file__).resolve().parents[2]


def notebook_namespace(path: Path, roles: tuple[str, ...] = ("given", "exercise")) -> dict:
    """Execute a notebook's imports cell and the cells with the given roles; return the resulting globals.

    This is exactly the code a learner runs before a check, so the stubs tested here are the real ones.
    """
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__notebook__"}
    for cell in cells:
        role = cell["metadata"].get("course", {}).get("role", "")
        source = "".join(cell["source"])
        if role in roles:
            exec(compile(source, f"<{path.name}>", "exec"), namespace)
        elif not role:  # other cells: only their imports (experiments would need finished exercises)
            imports = [node for node in ast.parse(source).body if isinstance(node, ast.Import | ast.ImportFrom)]
            exec(compile(ast.Module(body=imports, type_ignores=[]), f"<{path.name}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def no_show():
    """`Figure.show` booby-trapped for a whole module: plot functions only return figures, the notebook shows them.
    Plot test modules ask for it with `pytestmark = pytest.mark.usefixtures("no_show")`."""
    import plotly.graph_objects as go

    def show(*args, **kwargs):
        raise AssertionError("plot functions return figures; the notebook shows them")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(go.Figure, "show", show)
        yield
