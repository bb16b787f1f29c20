"""The scripts of benchmarks/ as modules (they are not a package)."""
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_benchmark(name: str):
    """``benchmarks/<name>.py``, imported afresh, with benchmarks/ importable as when the
    script runs (its helpers are modules there)."""
    if os.path.join(REPO, "benchmarks") not in sys.path:
        sys.path.append(os.path.join(REPO, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
