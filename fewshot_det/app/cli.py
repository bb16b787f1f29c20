"""``fewshot-app`` / ``tools/app.py``: start the web app on a model.

    fewshot-app --config CFG --weights CKPT [--data SPEC ...] [--root DIR ...]
        [--supports FILE] [--workdir DIR] [--port 8000] [--host 127.0.0.1] [KEY VALUE ...]

The server listens on 127.0.0.1 unless ``--host`` says otherwise: the app has no login,
and reads the folders under ``--data`` / ``--root`` for anyone who can reach it.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import tempfile

from ..engine.defaults import add_debug_argument, run_tool

logger = logging.getLogger("fewshot_det.app")

MISSING_EXTRA = ("the web app needs its optional dependencies: pip install 'fewshot_det[app]' "
                 "(FastAPI, uvicorn, Jinja2, python-multipart)")


def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fewshot-app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE", help="the model's YAML config")
    p.add_argument("--weights", required=True, metavar="CKPT",
                   help="the model's weights (sets MODEL.WEIGHTS)")
    p.add_argument("--data", action="append", default=[], metavar="SPEC",
                   help="a dataset to pick photos from and to review (voc:PATH:SPLIT, "
                        "yolo:PATH:SPLIT, coco:JSON[:IMAGE_ROOT] or a registered name); "
                        "its folders may be detected on; repeat for more")
    p.add_argument("--root", action="append", default=[], metavar="DIR",
                   help="a folder whose images (and sub-folders') may be detected on; "
                        "repeat for more")
    p.add_argument("--supports", metavar="FILE", default=None,
                   help="the support file of the taught classes: loaded at start when it "
                        "exists, written by 'Save classes' (default: supports.json in the "
                        "current folder, not loaded)")
    p.add_argument("--workdir", metavar="DIR", default=None,
                   help="where uploaded photos are kept (default: a new temporary folder)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="config overrides, e.g. MODEL.DEVICE cpu TEST.SLICE.SIZE 640")
    return p


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    return run_tool(serve, args, debug=args.debug)


def build_state(args):
    """The ``AppState`` of the parsed arguments: config, model, datasets, support file."""
    from ..config import load_cfg
    from ..engine.predictor import Predictor
    from .images import ImageStore
    from .session import ModelSession
    from .state import AppState

    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights {args.weights}: no such file")
    for spec in args.data:
        _check_dataset(spec)
    for root in args.root:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"--root {root}: no such folder")
    # load_cfg, not load_config: the class count comes from the checkpoint's class names
    # (Predictor), so DATASETS.TRAIN is not read (for the quick-start configs it would
    # render the synthetic shapes) unless the checkpoint does not name its classes.
    cfg = load_cfg(args.config, list(args.opts) + ["MODEL.WEIGHTS", args.weights])
    session = ModelSession(cfg, Predictor(cfg))
    workdir = args.workdir or tempfile.mkdtemp(prefix="fewshot-app-")
    store = ImageStore(os.path.join(workdir, "uploads"))
    state = AppState(session, store, datasets=args.data, roots=args.root,
                     supports_path=args.supports or "supports.json")
    if args.supports and not os.path.exists(args.supports):
        logger.info("--supports %s does not exist yet: 'Save classes' will write it",
                    args.supports)
    elif args.supports:
        try:
            state.session.teach(state.read_supports(), replace_all=True)
        except ValueError as e:
            raise ValueError(f"--supports: {e}") from e
    return state


def _check_dataset(spec: str) -> None:
    from ..data import check_dataset_names

    check_dataset_names([spec], "--data")


def serve(args) -> None:
    try:
        import uvicorn

        from .routes import create_app
    except ImportError as e:
        raise ValueError(f"{MISSING_EXTRA} ({e})") from e
    from ..engine.defaults import setup_logging

    setup_logging(None)
    state = build_state(args)
    if not _is_loopback(args.host):
        logger.warning("listening on %s: anyone who can reach this address can use the model "
                       "and read the images under %s", args.host, state.roots or "(none)")
    print(f"fewshot_det app: http://{args.host}:{args.port}/  (Ctrl+C stops it)",
          file=sys.stderr)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
