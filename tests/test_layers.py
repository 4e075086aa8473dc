"""The layout's rule: a lower layer never imports a higher one, and no modules import each other in a circle.
Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Lowest first. A module may import its own layer and those before it.
LAYERS = ["tasks.errors", "tasks.settings", "tasks.prepare", "tasks.data", "tasks.model", "tasks.report",
          "tasks.tracking", "tasks.registry", "tasks.pyfunc", "tasks.runs", "services", "flows"]
PACKAGES = ("tasks", "services", "flows")


def layer(module: str) -> int:
    """Index in LAYERS of the longest entry that `module` is or lies inside."""
    found = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    assert found, f"{module} is in no layer: add its package to LAYERS"
    return found[-1]


def imports() -> dict[str, set[str]]:
    """Each product module -> the product modules it imports (anywhere in its body)."""
    graph = {}
    for path in sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from tasks.data import ingest` imports tasks.data.ingest; `from x import name`, x.
                found |= {f"{node.module}.{a.name}" if (REPO / node.module.replace(".", "/") / f"{a.name}.py").exists()
                          else node.module for a in node.names}
        graph[module] = {m for m in found if m.split(".")[0] in PACKAGES and m != module}
    return graph


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} imports {target}" for module, targets in imports().items() for target in sorted(targets)
              if layer(target) > layer(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle[cycle.index(cycle[-1]):])


def test_the_rule_sees_an_upward_import():
    """The check itself: settings importing the split stage (as it once did) is caught."""
    assert layer("tasks.prepare.split") > layer("tasks.settings")
    assert layer("services.tempserver") > layer("tasks.tracking.locks")


def test_the_fan_out_commands_import_no_tensorflow():
    """A sweep's or backtest's command only submits fits: its workers train. On two cores, a third import
    of TensorFlow beside the two workers' (about 4 s of CPU) delayed the first trial."""
    import subprocess
    import sys

    code = ("import sys, flows.cli.sweeps, flows.sweep, flows.backtest, flows.fanout, tasks.runs.fit; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
