import os

import pytest

from fewshot_det import get_cfg
from fewshot_det.config import (ConfigError, check_num_classes, load_cfg, num_classes,
                                num_classes_key, set_num_classes, validate_cfg)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_defaults_are_valid_and_independent():
    a, b = get_cfg(), get_cfg()
    a.SOLVER.BASE_LR = 1.0
    assert b.SOLVER.BASE_LR == 0.02
    validate_cfg(b)


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path, "base.yaml", "SOLVER:\n  BASE_LR: 0.1\n  MAX_ITER: 100\n  STEPS: [50]\n"
                                 "  WARMUP_ITERS: 10\nMODEL:\n  RESNETS:\n    DEPTH: 18\n")
    child = write(tmp_path, "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 200\n")
    cfg = get_cfg()
    cfg.merge_from_file(child)
    cfg.merge_from_list(["SOLVER.BASE_LR", "1", "OUTPUT_DIR", "/tmp/x"])
    assert cfg.SOLVER.MAX_ITER == 200 and cfg.MODEL.RESNETS.DEPTH == 18
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.OUTPUT_DIR == "/tmp/x"
    validate_cfg(cfg)


@pytest.mark.parametrize("base_of_c", ["a.yaml", "[z.yaml, a.yaml]"])
def test_base_cycle_is_one_error_naming_the_files(tmp_path, base_of_c):
    write(tmp_path, "z.yaml", "SOLVER:\n  MAX_ITER: 5\n")
    write(tmp_path, "a.yaml", "_BASE_: b.yaml\n")
    write(tmp_path, "b.yaml", "_BASE_: c.yaml\n")
    c = write(tmp_path, "c.yaml", f"_BASE_: {base_of_c}\n")
    with pytest.raises(ConfigError) as info:
        get_cfg().merge_from_file(c)
    message = str(info.value)
    assert "\n" not in message and "_BASE_ cycle" in message
    loop = [os.path.basename(p) for p in message.split(": ", 1)[1].split(" -> ")]
    assert loop == ["c.yaml", "a.yaml", "b.yaml", "c.yaml"]


def test_diamond_bases_are_not_a_cycle(tmp_path):
    write(tmp_path, "root.yaml", "SOLVER:\n  MAX_ITER: 5\n")
    write(tmp_path, "left.yaml", "_BASE_: root.yaml\n")
    write(tmp_path, "right.yaml", "_BASE_: root.yaml\n")
    top = write(tmp_path, "top.yaml", "_BASE_: [left.yaml, right.yaml]\n")
    cfg = get_cfg()
    cfg.merge_from_file(top)
    assert cfg.SOLVER.MAX_ITER == 5


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "bad.yaml", "MODEL:\n  RESNET:\n    DEPTH: 18\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*MODEL\.RESNET"):
        get_cfg().merge_from_file(path)
    with pytest.raises(ConfigError, match="SOLVER.NOPE"):
        get_cfg().merge_from_list(["SOLVER.NOPE", "1"])


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "bad.yaml", "SOLVER:\n  MAX_ITER: many\n")
    with pytest.raises(ConfigError, match="SOLVER.MAX_ITER"):
        get_cfg().merge_from_file(path)
    with pytest.raises(ConfigError, match="SOLVER.IMS_PER_BATCH"):
        get_cfg().merge_from_list(["SOLVER.IMS_PER_BATCH", "four"])


def test_odd_override_list_and_missing_file():
    with pytest.raises(ConfigError, match="odd"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="not found"):
        get_cfg().merge_from_file("/nonexistent/x.yaml")


@pytest.mark.parametrize("overrides, key", [
    (["SOLVER.MAX_ITER", "100", "SOLVER.STEPS", "(50, 150)", "SOLVER.WARMUP_ITERS", "0"],
     "SOLVER.STEPS"),
    (["MODEL.BACKBONE.FREEZE_AT", "7"], "FREEZE_AT"),
    (["MODEL.RESNETS.DEPTH", "42"], "DEPTH"),
    (["INPUT.FORMAT", "BRG"], "INPUT.FORMAT"),
    (["FEWSHOT.BASE_CLASSES", "['a','b']", "FEWSHOT.NOVEL_CLASSES", "['b']"], "share"),
    (["MODEL.FPN.IN_FEATURES", "['res1']"], "FPN.IN_FEATURES"),
    (["INPUT.MIN_SIZE_TRAIN_SAMPLING", "range", "INPUT.MIN_SIZE_TRAIN", "(640,)"],
     "MIN_SIZE_TRAIN"),
])
def test_cross_field_checks(overrides, key):
    cfg = get_cfg()
    cfg.merge_from_list(overrides)
    with pytest.raises(ConfigError, match=key):
        validate_cfg(cfg)


def test_num_classes_vs_dataset():
    cfg = get_cfg()
    check_num_classes(cfg, ["a", "b"])  # -1 = from data
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    with pytest.raises(ConfigError, match="NUM_CLASSES is 3.*2 classes"):
        check_num_classes(cfg, ["a", "b"])


def test_crop_warm_up_keys_under_the_backbone_name_the_pretrain_key(tmp_path):
    path = write(tmp_path, "warmup.yaml",
                 "MODEL:\n  BACKBONE:\n    CROP_PRETRAIN:\n      ITERS: 400\n")
    with pytest.raises(ConfigError, match=r"warmup\.yaml: MODEL\.BACKBONE\.CROP_PRETRAIN\."
                                          r"ITERS is not a key; set PRETRAIN\.ITERS$"):
        get_cfg().merge_from_file(path)
    child = write(tmp_path, "child.yaml", "_BASE_: warmup.yaml\n")  # through _BASE_ as well
    with pytest.raises(ConfigError, match="set PRETRAIN.ITERS"):
        get_cfg().merge_from_file(child)
    with pytest.raises(ConfigError, match="set PRETRAIN.BATCH_SIZE"):
        get_cfg().merge_from_list(["MODEL.BACKBONE.CROP_PRETRAIN.BATCH_SIZE", "8"])
    cfg = get_cfg()
    cfg.merge_from_list(["PRETRAIN.ITERS", "400"])
    assert cfg.PRETRAIN.ITERS == 400


def test_yolo_reads_its_class_count_from_its_own_key():
    cfg = get_cfg()
    assert num_classes_key(cfg) == "MODEL.ROI_HEADS.NUM_CLASSES"
    cfg.MODEL.META_ARCHITECTURE = "YOLOGrid"
    assert num_classes_key(cfg) == "MODEL.YOLO.NUM_CLASSES" and num_classes(cfg) == -1
    set_num_classes(cfg, 12)
    assert cfg.MODEL.YOLO.NUM_CLASSES == 12 and cfg.MODEL.ROI_HEADS.NUM_CLASSES == -1
    check_num_classes(cfg, [str(i) for i in range(12)])
    with pytest.raises(ConfigError, match="MODEL.YOLO.NUM_CLASSES is 12 but the training data"):
        check_num_classes(cfg, ["a", "b"])
    validate_cfg(cfg)


def test_yolo_config_setting_the_rcnn_class_count_is_refused(tmp_path):
    path = write(tmp_path, "yolo.yaml", 'MODEL:\n  META_ARCHITECTURE: "YOLOGrid"\n'
                                        "  ROI_HEADS:\n    NUM_CLASSES: 20\n")
    with pytest.raises(ConfigError, match="MODEL.ROI_HEADS.NUM_CLASSES is not read by YOLOGrid; "
                                          "set its class count with MODEL.YOLO.NUM_CLASSES"):
        load_cfg(path)
    cfg = load_cfg(path, ["MODEL.ROI_HEADS.NUM_CLASSES", "-1", "MODEL.YOLO.NUM_CLASSES", "20"])
    assert num_classes(cfg) == 20
