"""Cross-field checks of a merged config, run before ``freeze()``.

Each check raises ``ConfigError`` naming the keys and values that disagree, so a user sees
"SOLVER.STEPS (5000,) must be < SOLVER.MAX_ITER 3000" instead of a crash hours later.
"""
from __future__ import annotations

from .config import CfgNode, ConfigError

# SOLVER.OPTIMIZER and PRETRAIN.OPTIMIZER values (engine/optim.py builds them).
OPTIMIZERS = ("SGD", "AdamW")
_RESNET_DEPTHS = (18, 34, 50, 101)
_STAGES = ("res2", "res3", "res4", "res5")
# Where a meta-architecture reads its class count K (others: MODEL.ROI_HEADS.NUM_CLASSES).
_NUM_CLASSES_NODE = {"YOLOGrid": "YOLO"}


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_resnet(m: CfgNode) -> None:
    _require(m.RESNETS.DEPTH in _RESNET_DEPTHS,
             f"MODEL.RESNETS.DEPTH must be one of {_RESNET_DEPTHS}, got {m.RESNETS.DEPTH}")
    _require(0 <= m.BACKBONE.FREEZE_AT <= 5,
             f"MODEL.BACKBONE.FREEZE_AT must be in 0..5, got {m.BACKBONE.FREEZE_AT}")
    _require(m.RESNETS.NORM in ("FrozenBN", "BN", "GN"),
             f"MODEL.RESNETS.NORM must be FrozenBN, BN or GN, got {m.RESNETS.NORM!r}")
    bad = [f for f in m.RESNETS.OUT_FEATURES if f not in _STAGES]
    _require(not bad, f"MODEL.RESNETS.OUT_FEATURES has unknown stages {bad}; use {_STAGES}")
    bad = [f for f in m.FPN.IN_FEATURES if f not in m.RESNETS.OUT_FEATURES]
    _require(not bad, f"MODEL.FPN.IN_FEATURES {bad} are not in MODEL.RESNETS.OUT_FEATURES "
                      f"{list(m.RESNETS.OUT_FEATURES)}")


def _check_mobilenet(m: CfgNode) -> None:
    _require(0 <= m.BACKBONE.FREEZE_AT <= 6, f"MODEL.BACKBONE.FREEZE_AT must be in 0..6 for "
                                             f"MobileNetV3, got {m.BACKBONE.FREEZE_AT}")
    _require(m.MOBILENET_V3.NORM in ("FrozenBN", "BN"),
             f"MODEL.MOBILENET_V3.NORM must be FrozenBN or BN, got {m.MOBILENET_V3.NORM!r}")
    stages = tuple(f"stage{k}" for k in range(6))
    bad = [f for f in m.MOBILENET_V3.OUT_FEATURES if f not in stages]
    _require(not bad, f"MODEL.MOBILENET_V3.OUT_FEATURES has unknown stages {bad}; use {stages}")
    bad = [f for f in m.FPN.IN_FEATURES if f not in m.MOBILENET_V3.OUT_FEATURES]
    _require(not bad, f"MODEL.FPN.IN_FEATURES {bad} are not in MODEL.MOBILENET_V3.OUT_FEATURES "
                      f"{list(m.MOBILENET_V3.OUT_FEATURES)}")


# The backbone keys each builder reads (a builder not listed checks its own when built).
_BACKBONE_CHECKS = {"build_resnet_fpn_backbone": _check_resnet,
                    "build_resnet_backbone": _check_resnet,
                    "build_mobilenet_v3_fpn_backbone": _check_mobilenet}


def _check_model(cfg: CfgNode) -> None:
    m = cfg.MODEL
    if m.BACKBONE.NAME in _BACKBONE_CHECKS:
        _BACKBONE_CHECKS[m.BACKBONE.NAME](m)
    _require(len(m.PIXEL_MEAN) == 3 and len(m.PIXEL_STD) == 3,
             f"MODEL.PIXEL_MEAN/PIXEL_STD need 3 values, got {m.PIXEL_MEAN} / {m.PIXEL_STD}")
    _require(all(s > 0 for s in m.PIXEL_STD), f"MODEL.PIXEL_STD must be > 0: {m.PIXEL_STD}")
    sizes = m.ANCHOR_GENERATOR.SIZES
    _require(len(sizes) in (1, len(m.RPN.IN_FEATURES)),
             f"MODEL.ANCHOR_GENERATOR.SIZES has {len(sizes)} levels but MODEL.RPN.IN_FEATURES "
             f"has {len(m.RPN.IN_FEATURES)}")
    lo, hi = m.RPN.IOU_THRESHOLDS
    _require(0 <= lo <= hi <= 1, f"MODEL.RPN.IOU_THRESHOLDS must be 0 <= lo <= hi <= 1, "
                                 f"got {list(m.RPN.IOU_THRESHOLDS)}")
    for key in ("RPN.POSITIVE_FRACTION", "ROI_HEADS.POSITIVE_FRACTION",
                "ROI_HEADS.IOU_THRESHOLD", "ROI_HEADS.NMS_THRESH_TEST", "RPN.NMS_THRESH"):
        a, b = key.split(".")
        v = m[a][b]
        _require(0 <= v <= 1, f"MODEL.{key} must be in [0, 1], got {v}")
    key = num_classes_key(cfg)
    k = num_classes(cfg)
    _require(k == -1 or k >= 1, f"{key} must be >= 1 or -1, got {k}")
    if key != "MODEL.ROI_HEADS.NUM_CLASSES":
        _require(m.ROI_HEADS.NUM_CLASSES == -1,
                 f"MODEL.ROI_HEADS.NUM_CLASSES is not read by {m.META_ARCHITECTURE}; set its "
                 f"class count with {key} (got MODEL.ROI_HEADS.NUM_CLASSES "
                 f"{m.ROI_HEADS.NUM_CLASSES})")


def _check_input(cfg: CfgNode) -> None:
    i = cfg.INPUT
    _require(i.FORMAT in ("BGR", "RGB"), f"INPUT.FORMAT must be BGR or RGB, got {i.FORMAT!r}")
    _require(i.MIN_SIZE_TRAIN_SAMPLING in ("choice", "range"),
             f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be choice or range, "
             f"got {i.MIN_SIZE_TRAIN_SAMPLING!r}")
    if i.MIN_SIZE_TRAIN_SAMPLING == "range":
        _require(len(i.MIN_SIZE_TRAIN) == 2,
                 f"INPUT.MIN_SIZE_TRAIN needs [min, max] with range sampling, "
                 f"got {list(i.MIN_SIZE_TRAIN)}")
    _require(len(i.MIN_SIZE_TRAIN) >= 1 and min(i.MIN_SIZE_TRAIN) > 0,
             f"INPUT.MIN_SIZE_TRAIN must hold positive sizes, got {list(i.MIN_SIZE_TRAIN)}")
    # A size of 0 would resize every image to nothing (OpenCV's assertion, or a division
    # by zero far from the config).
    for key in ("MAX_SIZE_TRAIN", "MIN_SIZE_TEST", "MAX_SIZE_TEST", "FIXED_SIZE"):
        _require(i[key] > 0, f"INPUT.{key} must be > 0 pixels, got {i[key]}")
    _require(0 <= i.RANDOM_FLIP <= 1, f"INPUT.RANDOM_FLIP is a probability, got {i.RANDOM_FLIP}")
    _require(i.RESIZE_MODE in ("shortest_edge", "fixed_square"),
             f"INPUT.RESIZE_MODE must be shortest_edge or fixed_square, got {i.RESIZE_MODE!r}")
    _require(i.RESIZE_BACKEND in ("opencv", "pil", "torchvision"),
             f"INPUT.RESIZE_BACKEND must be opencv, pil or torchvision, "
             f"got {i.RESIZE_BACKEND!r}")


def _check_slice(cfg: CfgNode) -> None:
    s = cfg.TEST.SLICE
    _require(s.SIZE >= 16, f"TEST.SLICE.SIZE must be >= 16 pixels, got {s.SIZE}")
    # OVERLAP 1 would never advance; near 1 the tile count explodes, which
    # engine/slicing.py bounds per image (MAX_TILES, it knows the image size).
    _require(0 <= s.OVERLAP < 1, f"TEST.SLICE.OVERLAP must be in [0, 1), got {s.OVERLAP}")
    _require(s.BATCH >= 1, f"TEST.SLICE.BATCH must be >= 1, got {s.BATCH}")
    _require(s.WHOLE_MIN_SIZE >= 0,
             f"TEST.SLICE.WHOLE_MIN_SIZE must be >= 0 pixels, got {s.WHOLE_MIN_SIZE}")
    for key in ("NMS_THRESH", "IOS_THRESH"):
        _require(0 < s[key] <= 1, f"TEST.SLICE.{key} must be in (0, 1], got {s[key]}")


def _check_solver(cfg: CfgNode) -> None:
    s = cfg.SOLVER
    _require(s.MAX_ITER > 0, f"SOLVER.MAX_ITER must be > 0, got {s.MAX_ITER}")
    _require(s.IMS_PER_BATCH > 0, f"SOLVER.IMS_PER_BATCH must be > 0, got {s.IMS_PER_BATCH}")
    _require(s.BASE_LR > 0, f"SOLVER.BASE_LR must be > 0, got {s.BASE_LR}")
    _require(s.OPTIMIZER in OPTIMIZERS,
             f"SOLVER.OPTIMIZER must be {' or '.join(OPTIMIZERS)}, got {s.OPTIMIZER!r}")
    _require(s.LR_SCHEDULER_NAME in ("WarmupMultiStepLR", "WarmupCosineLR"),
             f"SOLVER.LR_SCHEDULER_NAME must be WarmupMultiStepLR or WarmupCosineLR, "
             f"got {s.LR_SCHEDULER_NAME!r}")
    steps = list(s.STEPS)
    _require(steps == sorted(steps), f"SOLVER.STEPS must be increasing, got {steps}")
    if s.LR_SCHEDULER_NAME == "WarmupMultiStepLR":
        late = [x for x in steps if x >= s.MAX_ITER]
        _require(not late, f"SOLVER.STEPS {late} must be < SOLVER.MAX_ITER {s.MAX_ITER}")
    _require(0 <= s.WARMUP_ITERS <= s.MAX_ITER,
             f"SOLVER.WARMUP_ITERS {s.WARMUP_ITERS} must be in [0, SOLVER.MAX_ITER {s.MAX_ITER}]")
    _require(s.WARMUP_METHOD in ("linear", "constant"),
             f"SOLVER.WARMUP_METHOD must be linear or constant, got {s.WARMUP_METHOD!r}")
    _require(s.CHECKPOINT_PERIOD > 0,
             f"SOLVER.CHECKPOINT_PERIOD must be > 0, got {s.CHECKPOINT_PERIOD}")
    _require(0 < s.EMA.DECAY < 1, f"SOLVER.EMA.DECAY must be in (0, 1), got {s.EMA.DECAY}")
    _require(s.AMP.DTYPE in ("bfloat16", "float16"),
             f"SOLVER.AMP.DTYPE must be bfloat16 or float16, got {s.AMP.DTYPE!r}")


def _check_data(cfg: CfgNode) -> None:
    _require(cfg.DATASETS.BOX_POLICY in ("clip", "strict"),
             f"DATASETS.BOX_POLICY must be clip or strict, got {cfg.DATASETS.BOX_POLICY!r}")
    _require(cfg.DATALOADER.NUM_WORKERS >= 0,
             f"DATALOADER.NUM_WORKERS must be >= 0, got {cfg.DATALOADER.NUM_WORKERS}")
    f = cfg.FEWSHOT
    both = sorted(set(f.BASE_CLASSES) & set(f.NOVEL_CLASSES))
    _require(not both, f"FEWSHOT.BASE_CLASSES and FEWSHOT.NOVEL_CLASSES share {both}")
    _require(f.SHOTS >= 0, f"FEWSHOT.SHOTS must be >= 0, got {f.SHOTS}")
    _require(f.FINETUNE.NOVEL_INIT in ("imprint", "random"),
             f"FEWSHOT.FINETUNE.NOVEL_INIT must be imprint or random, "
             f"got {f.FINETUNE.NOVEL_INIT!r}")
    _require(f.FINETUNE.IMPRINT_CLASSES in ("new", "all"),
             f"FEWSHOT.FINETUNE.IMPRINT_CLASSES must be new or all, "
             f"got {f.FINETUNE.IMPRINT_CLASSES!r}")
    _require(0 <= f.FINETUNE.BASE_LABEL_SCORE < 1,
             f"FEWSHOT.FINETUNE.BASE_LABEL_SCORE must be in [0, 1) (0 = off), "
             f"got {f.FINETUNE.BASE_LABEL_SCORE}")
    c = f.CALIBRATION
    _require(0 <= c.ALPHA <= 1, f"FEWSHOT.CALIBRATION.ALPHA must be in [0, 1], got {c.ALPHA}")
    _require(c.CONTEXT >= 0, f"FEWSHOT.CALIBRATION.CONTEXT must be >= 0, got {c.CONTEXT}")
    _require(not c.WEIGHTS or cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN",
             f"FEWSHOT.CALIBRATION.WEIGHTS is set, but MODEL.META_ARCHITECTURE "
             f"{cfg.MODEL.META_ARCHITECTURE} has no calibration (GeneralizedRCNN only: set "
             f"FEWSHOT.CALIBRATION.WEIGHTS '')")
    _require(cfg.TEST.EVAL_PERIOD >= 0,
             f"TEST.EVAL_PERIOD must be >= 0, got {cfg.TEST.EVAL_PERIOD}")


def validate_cfg(cfg: CfgNode) -> CfgNode:
    """Run every cross-field check; return ``cfg`` unchanged when all pass."""
    for check in (_check_model, _check_input, _check_solver, _check_slice, _check_data):
        check(cfg)
    return cfg


def num_classes_key(cfg: CfgNode) -> str:
    """The key holding the class count K of ``MODEL.META_ARCHITECTURE``:
    ``MODEL.YOLO.NUM_CLASSES`` for YOLOGrid, ``MODEL.ROI_HEADS.NUM_CLASSES`` otherwise."""
    return f"MODEL.{_NUM_CLASSES_NODE.get(cfg.MODEL.META_ARCHITECTURE, 'ROI_HEADS')}.NUM_CLASSES"


def num_classes(cfg: CfgNode) -> int:
    """The class count K the configured model is built with (-1 = not yet taken from data)."""
    return cfg.MODEL[num_classes_key(cfg).split(".")[1]].NUM_CLASSES


def set_num_classes(cfg: CfgNode, k: int) -> None:
    """Set the class count of the configured meta-architecture (``cfg`` must be mutable)."""
    cfg.MODEL[num_classes_key(cfg).split(".")[1]].NUM_CLASSES = int(k)


def check_num_classes(cfg: CfgNode, thing_classes) -> None:
    """The model's class count must match the training data's (when set explicitly)."""
    k = num_classes(cfg)
    if k != -1 and k != len(thing_classes):
        raise ConfigError(
            f"{num_classes_key(cfg)} is {k} but the training data has "
            f"{len(thing_classes)} classes {list(thing_classes)}; set it to "
            f"{len(thing_classes)} or -1 (take it from the data)"
        )
