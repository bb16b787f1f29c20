"""Configuration: ``get_cfg()`` returns a fresh copy of every declared key."""
from typing import Sequence

from .config import CfgNode, ConfigError
from .validate import (check_num_classes, num_classes, num_classes_key, set_num_classes,
                       validate_cfg)


def get_cfg() -> CfgNode:
    """A new, mutable config holding the defaults of ``fewshot_det/config/defaults.py``."""
    from .defaults import _C

    return CfgNode(_C.clone())  # our subclass, so merges give clear errors


def load_cfg(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Defaults <- ``config_file`` (with ``_BASE_``) <- ``opts`` (KEY VALUE pairs), checked
    by ``validate_cfg``; mutable, and no dataset is read (the class count stays as set)."""
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return validate_cfg(cfg)


__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_cfg", "validate_cfg", "check_num_classes",
           "num_classes", "num_classes_key", "set_num_classes"]
