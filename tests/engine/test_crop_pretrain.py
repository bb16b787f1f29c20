"""Backbone warm-up on object crops (fewshot_det/engine/crop_pretrain.py)."""
import numpy as np
import pytest
import torch
from torch import nn

from fewshot_det import get_cfg
from fewshot_det.data.build import training_records
from fewshot_det.engine import train_loop
from fewshot_det.engine.crop_pretrain import CropBank, feature_body, pretrain_backbone_on_crops
from fewshot_det.modeling import build_model
import fewshot_fixtures
from tiny_datasets import make_voc


@pytest.fixture(scope="module")
def voc_spec(tmp_path_factory):
    # One box per (noise) image, two classes, 6 boxes each.
    objects = {}
    for i in range(12):
        name = "dog" if i % 2 else "cat"
        objects[f"im{i}"] = (64, 64, [(name, [8 + i, 10, 40 + i, 44], 0)])
    root = make_voc(tmp_path_factory.mktemp("voc"), objects, classes=["cat", "dog"])
    return f"voc:{root}:train"


def cfg_for(spec, out, *opts):
    cfg = get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('{spec}',)", "DATASETS.TEST", "()",
        "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0",
        "MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
        "MODEL.ROI_HEADS.NUM_CLASSES", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "64", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.EMA.ENABLED", "True", "SOLVER.STEPS", "()",
        "PRETRAIN.ITERS", "6", "PRETRAIN.BATCH_SIZE", "4", "PRETRAIN.SIZE", "32",
        "OUTPUT_DIR", str(out), *opts])
    return cfg


def test_crop_bank_cuts_every_box_with_its_class(voc_spec, tmp_path):
    records, _ = training_records(cfg_for(voc_spec, tmp_path))
    bank = CropBank(records, side=40, context=0.1, image_format="BGR", max_crops=100, seed=0)
    assert bank.crops.shape == (12, 40, 40, 3) and bank.crops.dtype == np.uint8
    assert bank.classes == [1, 2]
    assert sorted(bank.labels.tolist()) == [0] * 6 + [1] * 6
    crops, boxes, labels = bank.sample(np.random.default_rng(0), 5, 32)
    assert crops.shape == (5, 32, 32, 3) and labels.shape == (5,) and boxes.shape == (5, 4)
    # each window still holds (part of) its object: a non-empty box inside the window
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes.max() <= 32
    small = CropBank(records, side=40, context=0.1, image_format="BGR", max_crops=3, seed=0)
    assert len(small) == 3


def test_pretraining_changes_only_the_resnet_and_is_deterministic(voc_spec, tmp_path):
    cfg = cfg_for(voc_spec, tmp_path)
    records, _ = training_records(cfg)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(cfg)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        torch.manual_seed(5)
        summary = pretrain_backbone_on_crops(cfg, model, records)
        assert torch.initial_seed() == 5  # the global torch RNG stream was not reseeded
        models.append(model)
    assert summary["iters"] == 6 and summary["crops"] == 12 and summary["classes"] == 2
    after = models[0].state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("backbone.body.") for k in changed)
    for k, v in models[1].state_dict().items():
        assert torch.equal(v, after[k]), k
    assert feature_body(models[0]) is models[0].backbone.body


def test_train_runs_it_from_scratch_but_not_on_resume(voc_spec, tmp_path, monkeypatch):
    calls = []
    real = train_loop.pretrain_backbone_on_crops
    monkeypatch.setattr(train_loop, "pretrain_backbone_on_crops",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = cfg_for(voc_spec, tmp_path)
    train_loop.train(cfg, build_model(cfg))
    assert calls == [1]
    cfg.SOLVER.MAX_ITER = 3
    train_loop.train(cfg, build_model(cfg), resume=True)  # continues from iteration 2
    assert calls == [1]


def test_bad_settings_name_the_key(voc_spec, tmp_path):
    cfg = cfg_for(voc_spec, tmp_path, "PRETRAIN.BATCH_SIZE", "1")
    with pytest.raises(ValueError, match="PRETRAIN.BATCH_SIZE"):
        pretrain_backbone_on_crops(cfg, build_model(cfg), [])


def test_adamw_pretraining_is_its_own_deterministic_update(voc_spec, tmp_path):
    def resnet_after(*opts):
        cfg = cfg_for(voc_spec, tmp_path, *opts)
        torch.manual_seed(0)
        model = build_model(cfg)
        pretrain_backbone_on_crops(cfg, model, training_records(cfg)[0])
        return model.backbone.body.state_dict()

    adam = resnet_after("PRETRAIN.OPTIMIZER", "AdamW", "PRETRAIN.BASE_LR", "0.001")
    again = resnet_after("PRETRAIN.OPTIMIZER", "AdamW", "PRETRAIN.BASE_LR", "0.001")
    sgd = resnet_after()
    assert all(torch.equal(v, again[k]) for k, v in adam.items())
    assert not torch.equal(adam["conv1.weight"], sgd["conv1.weight"])
    with pytest.raises(ValueError, match="PRETRAIN.OPTIMIZER must be SGD or AdamW, got 'adam'"):
        cfg = cfg_for(voc_spec, tmp_path, "PRETRAIN.OPTIMIZER", "adam")
        pretrain_backbone_on_crops(cfg, build_model(cfg), [])


def test_heads_pretraining_trains_the_fpn_and_box_classifier_only(voc_spec, tmp_path):
    cfg = cfg_for(voc_spec, tmp_path, "PRETRAIN.HEADS", "True")
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pretrain_backbone_on_crops(cfg, model, training_records(cfg)[0])
    after = model.state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in after
               if not torch.equal(after[k], before[k])}
    assert changed == {"backbone.body", "backbone.fpn", "roi_heads.box_head",
                       "roi_heads.box_predictor"}
    assert torch.equal(after["roi_heads.box_predictor.bbox_pred.weight"],
                       before["roi_heads.box_predictor.bbox_pred.weight"])
    assert model.training


def test_heads_pretraining_names_the_model_it_needs(voc_spec, tmp_path):
    cfg = cfg_for(voc_spec, tmp_path, "PRETRAIN.HEADS", "True")
    with pytest.raises(ValueError, match="PRETRAIN.HEADS True needs MODEL.META_ARCHITECTURE "
                                         "GeneralizedRCNN"):
        # the siamese classifier scores against prototypes: no crop-only class logits
        pretrain_backbone_on_crops(cfg, fewshot_fixtures.tiny_model(), [])
    with pytest.raises(ValueError, match="needs a fewshot_det detector, got Sequential"):
        pretrain_backbone_on_crops(cfg, nn.Sequential(feature_body(build_model(cfg))), [])
