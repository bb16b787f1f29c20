"""What may change when a run is resumed: the saved config against the current one.

A resumed run continues the saved weights, optimizer state, schedule position and data
position, so most keys must keep the values that produced the checkpoint:

    OUTPUT_DIR                       ignored (the folder may have moved)
    SOLVER.*, TEST.*, MODEL.DEVICE,  take effect: the loop, the schedule and the optimizer's
    DATALOADER.NUM_WORKERS           hyper-parameters are rebuilt from the config
    SOLVER keys of ``CANNOT_CHANGE``  refused: the checkpoint's state depends on them
    everything else (MODEL, INPUT,   refused: the weights or the data position belong to
    DATASETS, FEWSHOT, SEED ...)     the saved values

Keys present on one side only (a default added since the run started) are not compared.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import yaml

__all__ = ["CANNOT_CHANGE", "config_changes", "check_resume_config", "saved_config_text"]

logger = logging.getLogger(__name__)

IGNORED = ("OUTPUT_DIR",)
TAKES_EFFECT = ("SOLVER.", "TEST.", "MODEL.DEVICE", "DATALOADER.NUM_WORKERS")
CANNOT_CHANGE = {
    "SOLVER.IMS_PER_BATCH": "the data position is counted in images",
    "SOLVER.LR_FACTORS": "it regroups the optimizer's parameters",
    "SOLVER.EMA.ENABLED": "the checkpoint's EMA state",
    "SOLVER.AMP.ENABLED": "the checkpoint's gradient-scaler state",
    "SOLVER.AMP.DTYPE": "the checkpoint's gradient-scaler state",
}


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: Dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(saved_text: str, current_text: str) -> Dict[str, Tuple[Any, Any]]:
    """key -> (saved value, current value) for the keys whose values differ.

    Both configs are compared as YAML text (``CfgNode.dump()``), so tuples and lists compare
    equal. OUTPUT_DIR and keys missing on one side are left out.
    """
    saved = _flatten(yaml.safe_load(saved_text) or {})
    current = _flatten(yaml.safe_load(current_text) or {})
    return {k: (saved[k], current[k]) for k in sorted(saved.keys() & current.keys())
            if k not in IGNORED and saved[k] != current[k]}


def _refusal(key: str, old: Any, new: Any) -> Optional[str]:
    """Why ``key`` may not change from ``old`` to ``new`` mid-run, or None."""
    if key in CANNOT_CHANGE:
        return CANNOT_CHANGE[key]
    if not key.startswith(TAKES_EFFECT):
        return ""
    return None


def _grouping_changes(changes: Dict[str, Tuple[Any, Any]], saved_text: str,
                      current_text: str) -> List[str]:
    # Parameters are grouped by weight decay; when WEIGHT_DECAY == WEIGHT_DECAY_NORM the
    # norm layers join the other group, so flipping that equality regroups the optimizer.
    keys = [k for k in ("SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM") if k in changes]
    if not keys:
        return []
    old = _flatten(yaml.safe_load(saved_text))
    new = _flatten(yaml.safe_load(current_text))
    same = [c.get("SOLVER.WEIGHT_DECAY") == c.get("SOLVER.WEIGHT_DECAY_NORM") for c in (old, new)]
    return keys if same[0] != same[1] else []


def check_resume_config(saved_text: Optional[str], cfg, *, checkpoint: str) -> List[str]:
    """Compare the config that wrote ``checkpoint`` with ``cfg`` before resuming from it.

    Args:
        saved_text: the saved config as YAML (None: nothing to compare, a warning).
        cfg: the current config.
        checkpoint: path of the checkpoint, named in the messages.

    Returns:
        the changed keys that take effect (each logged as ``resume: KEY old -> new``).

    Raises:
        ValueError: one line naming every changed key that cannot take effect, its saved
            value and the config's.
    """
    if saved_text is None:
        logger.warning("--resume: no saved config for %s (neither in the checkpoint nor "
                       "in OUTPUT_DIR/config.yaml); the current config is not compared",
                       checkpoint)
        return []
    current_text = cfg.dump()
    changes = config_changes(saved_text, current_text)
    regrouped = _grouping_changes(changes, saved_text, current_text)
    refused = []
    for key, (old, new) in changes.items():
        why = "it regroups the optimizer's parameters" if key in regrouped else \
            _refusal(key, old, new)
        if why is not None:
            refused.append(f"{key} {old}, the config says {new}" + (f" ({why})" if why else ""))
    if refused:
        values = "the old value" if len(refused) == 1 else "the old values"
        raise ValueError(f"--resume: {checkpoint} was trained with {'; '.join(refused)}; use "
                         f"another OUTPUT_DIR or {values}")
    for key, (old, new) in changes.items():
        logger.info("resume: %s %s -> %s takes effect", key, old, new)
    return list(changes)


def saved_config_text(ckpt: Dict[str, Any], output_dir: str) -> Optional[str]:
    """The config that wrote ``ckpt``: the copy inside it (``extra["config"]``), else
    ``output_dir/config.yaml``, else None."""
    text = (ckpt.get("extra") or {}).get("config")
    if text:
        return text
    path = os.path.join(output_dir, "config.yaml")
    if os.path.isfile(path):
        with open(path) as f:
            return f.read()
    return None
