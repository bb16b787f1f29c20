"""What every tool shares: one argument parser and one setup function."""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from typing import Any, Callable, List, Optional

import numpy as np

from ..config import CfgNode, check_num_classes, load_cfg, set_num_classes

logger = logging.getLogger("fewshot_det")


def default_argument_parser(description: str = "fewshot_det") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", metavar="FILE", required=True,
                   help="YAML config (may inherit with _BASE_)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT_DIR/last_checkpoint when it exists")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUTPUT_DIR that holds an earlier run's checkpoints "
                        "(deletes them)")
    p.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    p.add_argument("--num-gpus", type=int, default=1,
                   help="processes on this machine (GPUs; on CPU, gloo workers)")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="config overrides, e.g. SOLVER.MAX_ITER 100 MODEL.DEVICE cpu")
    return p


# Errors that describe the user's input (config, data, arguments): a tool prints their
# message alone. DataError and ConfigError are ValueErrors; KeyError is an unknown dataset.
USER_ERRORS = (ValueError, FloatingPointError, KeyError, FileNotFoundError)


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the traceback of a user error (also env ``FEWSHOT_DEBUG=1``)."""
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the traceback (or set FEWSHOT_DEBUG=1)")


def run_tool(main: Callable, *args: Any, debug: bool = False) -> int:
    """Call ``main(*args)``; a user error becomes one ``error: <message>`` line on stderr.

    Args:
        main: the tool's entry point.
        debug: re-raise instead (the traceback); also on when env ``FEWSHOT_DEBUG=1``.
    Returns:
        the exit code: ``main``'s integer result (0 when it returns anything else), or 2
        after a user error.
    """
    debug = debug or os.environ.get("FEWSHOT_DEBUG", "") not in ("", "0")
    try:
        result = main(*args)
    except USER_ERRORS as e:
        if debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        release_output_dirs()
    return result if isinstance(result, int) else 0


def setup_logging(output_dir: Optional[str], rank: int = 0) -> None:
    root = logging.getLogger()
    if getattr(root, "_fewshot_configured", False):
        return
    fmt = logging.Formatter("[%(asctime)s %(name)s] %(levelname)s %(message)s", "%H:%M:%S")
    root.setLevel(logging.INFO)
    if rank == 0:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        root.addHandler(h)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        name = "log.txt" if rank == 0 else f"log.rank{rank}.txt"
        fh = logging.FileHandler(os.path.join(output_dir, name))
        fh.setFormatter(fmt)
        root.addHandler(fh)
    root._fewshot_configured = True


def seed_all(seed: int) -> int:
    """Seed Python, NumPy and torch; a negative seed draws one (and returns it to log)."""
    import torch

    if seed < 0:
        seed = int.from_bytes(os.urandom(2), "little")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def resolve_device(name: str) -> "torch.device":
    """MODEL.DEVICE -> torch.device; "auto" is cuda when available, else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE is {name!r} but CUDA is not available; use cpu or auto")
    return device


def resolve_num_classes(cfg: CfgNode) -> None:
    """Fill the model's class count (``num_classes_key``: MODEL.ROI_HEADS.NUM_CLASSES, or
    MODEL.YOLO.NUM_CLASSES for YOLOGrid) from the data when -1, or check it against the data."""
    from ..data import get_dataset

    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    if not names:
        return
    _, meta = get_dataset(names[0], check_images=False, box_policy="keep")
    check_num_classes(cfg, meta.thing_classes)
    set_num_classes(cfg, len(meta.thing_classes))


def load_config(config_file: str, opts: List[str]) -> CfgNode:
    """Defaults <- file (with _BASE_) <- overrides, checked, the class count taken from the
    data (``resolve_num_classes``), frozen."""
    cfg = load_cfg(config_file, opts)
    resolve_num_classes(cfg)
    cfg.freeze()
    return cfg


def _saved_seed(output_dir: str) -> Optional[int]:
    """SEED of the run saved in ``output_dir/config.yaml`` (None when unknown)."""
    import yaml

    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        seed = (yaml.safe_load(f) or {}).get("SEED")
    return seed if isinstance(seed, int) and seed >= 0 else None


_TOOL_LOCKS: list = []  # run locks taken by default_setup, released when the tool ends


def hold_output_dir(output_dir: str) -> None:
    """Take ``output_dir``'s run lock (``engine.run_lock``) until the tool ends
    (``run_tool``; at exit otherwise), before anything is written there: a second run is
    refused with its files untouched."""
    import atexit

    from .run_lock import RunLock

    lock = RunLock(output_dir)
    lock.acquire()
    _TOOL_LOCKS.append(lock)
    atexit.register(lock.release)


def release_output_dirs() -> None:
    """Release the run locks ``hold_output_dir`` took in this process."""
    while _TOOL_LOCKS:
        _TOOL_LOCKS.pop().release()


def default_setup(cfg: CfgNode, args: argparse.Namespace) -> CfgNode:
    """Run lock, logging, seed, ``OUTPUT_DIR/config.yaml``; returns cfg with the seed
    actually used.

    The lock comes first, then the refusal of (or with ``--overwrite`` the deletion of, each
    file listed) an earlier run's files: a refused run writes nothing. With ``args.resume``
    over a folder holding checkpoints, a negative SEED takes the saved run's seed, and
    config.yaml is left for ``train`` to write once it has compared the saved config with
    this one (``engine.resume_config``).
    """
    from .checkpoint import check_fresh_start, checkpoint_files
    from .comm import get_rank, is_main_process

    if is_main_process():
        hold_output_dir(cfg.OUTPUT_DIR)
    has_checkpoints = bool(checkpoint_files(cfg.OUTPUT_DIR))
    resuming = bool(getattr(args, "resume", False)) and has_checkpoints
    eval_only = getattr(args, "eval_only", False)
    deleted: List[str] = []
    if has_checkpoints and not resuming and not eval_only:
        overwrite = getattr(args, "overwrite", False)
        if not overwrite or is_main_process():
            deleted = check_fresh_start(cfg.OUTPUT_DIR, overwrite=overwrite, logs=True)
    setup_logging(cfg.OUTPUT_DIR, get_rank())
    if deleted:
        logger.warning("--overwrite: started over in %s, deleted: %s", cfg.OUTPUT_DIR,
                       ", ".join(deleted))
    saved_seed = _saved_seed(cfg.OUTPUT_DIR) if resuming and cfg.SEED < 0 else None
    seed = seed_all(cfg.SEED if saved_seed is None else saved_seed)
    if seed != cfg.SEED:
        cfg.defrost()
        cfg.SEED = seed
        cfg.freeze()
    logger.info("command line: %s", " ".join(sys.argv))
    logger.info("seed: %d", seed)
    if is_main_process() and not resuming and not (has_checkpoints and eval_only):
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
        with open(path, "w") as f:
            f.write(cfg.dump())
        logger.info("full config written to %s", path)
    return cfg
