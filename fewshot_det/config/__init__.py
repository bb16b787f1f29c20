"""Configuration: ``get_cfg()`` returns a fresh copy of every declared key."""
from .config import CfgNode, ConfigError
from .validate import check_num_classes, validate_cfg


def get_cfg() -> CfgNode:
    """A new, mutable config holding the defaults of ``fewshot_det/config/defaults.py``."""
    from .defaults import _C

    return CfgNode(_C.clone())  # our subclass, so merges give clear errors


__all__ = ["CfgNode", "ConfigError", "get_cfg", "validate_cfg", "check_num_classes"]
