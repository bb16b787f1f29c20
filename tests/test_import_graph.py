"""Imports between fewshot_det's modules form no circle, and each data module imports on its
own in a fresh interpreter.

The graph counts every import statement, those inside functions too: a deferred import
hides a circle from the interpreter but not from a reader, and the circle comes back as
soon as someone moves the import to the top of the file.
"""
import ast
import os
import subprocess
import sys
from typing import Dict, List, Optional, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "fewshot_det"


def package_modules() -> Dict[str, str]:
    """Dotted module name -> file, for every .py file of the package."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def _imported_names(module: str, path: str, node: ast.AST) -> List[str]:
    """Dotted names an import statement may load (module, and module.attr for submodules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        parts = module.split(".")
        if not path.endswith("__init__.py"):
            parts = parts[:-1]  # relative to the module's package
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the package modules it imports anywhere in its file."""
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        graph[module] = {name for node in ast.walk(tree)
                         if isinstance(node, (ast.Import, ast.ImportFrom))
                         for name in _imported_names(module, path, node)
                         if name in modules and name != module}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import circle as [a, b, ..., a], or None."""
    state: Dict[str, int] = {}  # 1 on the current path, 2 done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_scan_sees_the_package():
    graph = import_graph()
    assert "fewshot_det.data.synthetic" in graph["fewshot_det.data.builtin"]
    assert "fewshot_det.data.root" in graph["fewshot_det.data.synthetic"]


def test_the_scan_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


DATA_MODULES = sorted(m for m in package_modules() if m.startswith(f"{PACKAGE}.data"))


@pytest.mark.parametrize("module", DATA_MODULES)
def test_data_module_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
