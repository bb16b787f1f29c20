"""defaults.py: every declared key is read somewhere, and each top-level node is declared
in one place (static scans of the source, no model is built)."""
import ast
import os
from typing import Dict, Iterator, List, Set

from fvcore.common.config import CfgNode

from fewshot_det import get_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS = os.path.join(ROOT, "fewshot_det", "config", "defaults.py")
# The config package declares and checks keys; a key only it names is read by nothing.
READERS = ("fewshot_det", "tools")
EXCLUDED = os.path.join(ROOT, "fewshot_det", "config")


def leaf_keys(node: CfgNode, prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def names_per_file() -> Dict[str, Set[str]]:
    """File -> the attribute names it accesses and the dotted parts of its string constants
    (``cfg.MODEL.YOLO.GRID_SIZE``, ``y.GRID_SIZE``, ``"MODEL.YOLO.GRID_SIZE"``,
    ``getattr(c, "GRID_SIZE")`` and ``node["GRID_SIZE"]`` all name GRID_SIZE)."""
    out = {}
    for top in READERS:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if folder.startswith(EXCLUDED):
                continue
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path) as f:
                    tree = ast.parse(f.read(), path)
                names = set()
                for n in ast.walk(tree):
                    if isinstance(n, ast.Attribute):
                        names.add(n.attr)
                    elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                        names.update(n.value.split("."))
                out[path] = names
    return out


def unread_keys(cfg: CfgNode, files: Dict[str, Set[str]]) -> List[str]:
    """Leaf keys no file names together with the node that holds them."""
    unread = []
    for key in leaf_keys(cfg):
        parts = key.split(".")
        needed = set(parts[-2:])  # the leaf, and its node for nested keys
        if not any(needed <= names for names in files.values()):
            unread.append(key)
    return unread


def test_every_key_is_read():
    assert unread_keys(get_cfg(), names_per_file()) == []


def test_the_scan_reports_a_key_nothing_reads():
    cfg = get_cfg()
    cfg.SOLVER.NEVER_READ_ANYWHERE = 1
    cfg.NEVER_READ_NODE = CfgNode({"ITERS": 1})  # a common leaf name under an unread node
    assert unread_keys(cfg, names_per_file()) == ["SOLVER.NEVER_READ_ANYWHERE",
                                                  "NEVER_READ_NODE.ITERS"]


def _top_level_node(target: ast.AST) -> str:
    """"X" for an assignment target ``_C.X`` or ``_C.X.Y...``; "" otherwise."""
    chain = []
    while isinstance(target, ast.Attribute):
        chain.append(target.attr)
        target = target.value
    return chain[-1] if isinstance(target, ast.Name) and target.id == "_C" and chain else ""


def top_level_runs(source: str) -> List[str]:
    """The top-level node of each module-level assignment, consecutive repeats merged."""
    runs: List[str] = []
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            node = _top_level_node(stmt.targets[0])
            if node and (not runs or runs[-1] != node):
                runs.append(node)
    return runs


def test_each_top_level_node_is_declared_in_one_place():
    with open(DEFAULTS) as f:
        runs = top_level_runs(f.read())
    repeated = sorted({n for n in runs if runs.count(n) > 1})
    assert not repeated, f"declared in more than one block of defaults.py: {repeated}"
    assert set(runs) == set(get_cfg().keys())


def test_the_block_scan_sees_a_second_block():
    source = "_C.MODEL = CN()\n_C.MODEL.A = 1\n_C.INPUT = CN()\n_C.MODEL.B = CN()\n"
    assert top_level_runs(source) == ["MODEL", "INPUT", "MODEL"]
