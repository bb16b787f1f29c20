"""TFA fine-tuning from cached RoI features (``engine.roi_cache``)."""
import re

import torch

from fewshot_det.data.build import training_records
from fewshot_det.engine.defaults import load_config
from fewshot_det.engine.fewshot import (cached_finetune_applies, freeze_parameters,
                                        load_with_surgery, run_fewshot, seed_config)
from fewshot_det.engine.roi_cache import (POOL, build_roi_cache, cached_batches,
                                          cached_head_layers)
from fewshot_det.modeling import build_model
from test_fewshot import SIAMESE, TFA, edp, write_config  # noqa: F401 (fixture)


def _final(tmp_path, name):
    return torch.load(tmp_path / name / "seed0" / "model_final.pth", weights_only=True)["model"]


def test_the_cache_holds_every_variant_with_its_objects(edp, tmp_path):  # noqa: F811
    config, _ = write_config(tmp_path, edp, TFA, "cache")
    cfg = seed_config(load_config(config, ["INPUT.MIN_SIZE_TRAIN", "(48, 64)"]), 2, 0)
    records, metadata = training_records(cfg)
    model = build_model(cfg)
    load_with_surgery(cfg, metadata, model, cfg.MODEL.WEIGHTS)
    freeze_parameters(model, list(cfg.FEWSHOT.FINETUNE.TRAINABLE))
    assert cached_finetune_applies(model)
    cache = build_roi_cache(cfg, model, records)
    assert cache.num_variants == len(records) * 2 * 2  # 2 scales x (plain, mirrored)
    assert len(cache.features) == len(cache.labels) == cache.offsets[-1]
    assert cache.features.shape[1] == cfg.MODEL.ROI_BOX_HEAD.FC_DIM
    for v, n in enumerate(cache.image_of):
        labels = cache.labels[cache.offsets[v]:cache.offsets[v + 1]]
        assert len(labels) <= POOL * cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
        # the GT boxes are among the RoIs, so every object's class is there
        assert {a["category_id"] for a in records[n]["annotations"]} <= set(labels.tolist())
    first = list(zip(range(3), cached_batches(cache, batch_size=2, seed=5, start_iter=0)))
    again = list(zip(range(2), cached_batches(cache, batch_size=2, seed=5, start_iter=1)))
    assert [b for _, b in first[1:]] == [b for _, b in again]  # resumable draws
    assert len({x["image_id"] for x in first[0][1]}) == 2  # distinct images in a batch
    # a siamese model or one training more than its predictor is not cached
    siamese = seed_config(load_config(write_config(tmp_path, edp, SIAMESE, "s")[0], []), 2, 0)
    assert not cached_finetune_applies(build_model(siamese))
    assert not cached_finetune_applies(build_model(cfg))  # nothing frozen


def test_cached_finetune_trains_only_the_predictor_and_resumes_exactly(edp, tmp_path):  # noqa: F811
    config, base = write_config(tmp_path, edp, TFA, "full")
    opts = ["SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2"]
    run_fewshot(load_config(config, opts), 2, [0])
    full = _final(tmp_path, "full")
    frozen = [k for k in base if not k.startswith("roi_heads.box_predictor.")
              and "num_batches" not in k]
    assert all(torch.equal(full[k], base[k]) for k in frozen)
    moved = full["roi_heads.box_predictor.bbox_pred.weight"]
    base_deltas = base["roi_heads.box_predictor.bbox_pred.weight"]
    assert not torch.equal(moved, base_deltas[:moved.shape[0]])
    # killed after the checkpoint of iteration 2, then --resume: the same weights
    out = tmp_path / "full" / "seed0"
    (out / "results.json").unlink()
    (out / "model_final.pth").unlink()
    (out / "last_checkpoint").write_text("model_0000001.pth")
    run_fewshot(load_config(config, opts), 2, [0], resume=True)
    resumed = _final(tmp_path, "full")
    assert all(torch.equal(resumed[k], full[k]) for k in full)


def test_the_image_by_image_finetune_stays_available(edp, tmp_path, caplog):  # noqa: F811
    config, _ = write_config(tmp_path, edp, TFA, "images")
    with caplog.at_level("INFO"):
        run_fewshot(load_config(config, ["FEWSHOT.FINETUNE.CACHE_ROI_FEATURES", "False"]),
                    2, [0])
    assert "cached RoI features" not in caplog.text
    with caplog.at_level("INFO"):
        run_fewshot(load_config(config, ["OUTPUT_DIR", str(tmp_path / "cached")]), 2, [0])
    assert "fine-tuning on cached RoI features" in caplog.text


def test_the_cache_runs_the_frozen_box_head_layers_ahead_of_the_trainable_ones(
        edp, tmp_path, caplog):  # noqa: F811
    fc2 = dict(TFA, trainable='["^roi_heads\\\\.box_predictor\\\\.", '
                              '"^roi_heads\\\\.box_head\\\\.fc2\\\\."]')
    config, base = write_config(tmp_path, edp, fc2, "fc2")
    cfg = seed_config(load_config(config, []), 2, 0)
    model = build_model(cfg).eval()
    freeze_parameters(model, list(cfg.FEWSHOT.FINETUNE.TRAINABLE))
    assert cached_head_layers(model) == 1 and cached_finetune_applies(model)
    side = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    pooled = torch.randn(5, model.roi_heads.box_head.fc1.in_features // side ** 2, side, side)
    torch.testing.assert_close(model.box_head_from(model.roi_heads.box_head(pooled, stop=1), 1),
                               model.roi_heads.box_head(pooled))
    # fc1 trainable: a cache would hold pooled maps, so it does not apply; nor with the FPN
    for pattern, expected in (("^roi_heads\\.box_predictor\\.", 2),
                              ("^roi_heads\\.box_(head|predictor)\\.", None),
                              ("^(roi_heads\\.box_predictor|backbone\\.fpn)\\.", None)):
        for name, p in model.named_parameters():
            p.requires_grad_(re.search(pattern, name) is not None)
        assert cached_head_layers(model) == expected, pattern
    with caplog.at_level("INFO"):
        run_fewshot(load_config(config, ["SOLVER.MAX_ITER", "4"]), 2, [0])
    assert "after 1 box-head layer(s)" in caplog.text
    tuned = _final(tmp_path, "fc2")
    assert torch.equal(tuned["roi_heads.box_head.fc1.weight"], base["roi_heads.box_head.fc1.weight"])
    assert not torch.equal(tuned["roi_heads.box_head.fc2.weight"],
                           base["roi_heads.box_head.fc2.weight"])
    assert all(torch.equal(tuned[k], base[k]) for k in tuned if k.startswith("backbone."))
