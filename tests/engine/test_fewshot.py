"""Few-shot fine-tuning over split seeds (``engine.fewshot``, tools/finetune_fewshot.py) end
to end on an EDP-like VOC tree, configured by YAML only."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fewshot_det.checkpoint import load_weights
from fewshot_det.data.build import training_records
from fewshot_det.data.catalog import DatasetCatalog
from fewshot_det.data.fewshot import FewShotWarning
from fewshot_det.engine.defaults import load_config
from fewshot_det.engine.fewshot import (load_with_surgery, run_fewshot, seed_config,
                                        warn_if_no_novel_ap)
from fewshot_det.engine.train_loop import evaluate_model
from fewshot_det.evaluation.seeds import format_summary
from fewshot_det.modeling import build_model
from fewshot_fixtures import make_edp_tree, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_CLASSES = ["pole", "tower"]  # the base checkpoint's classes (a "COCO-like" base set)

YAML = """
MODEL:
  META_ARCHITECTURE: "{arch}"
  DEVICE: "cpu"
  WEIGHTS: "{weights}"
  BACKBONE: {{FREEZE_AT: {freeze_at}}}
  RESNETS: {{DEPTH: 18, NORM: "BN", OUT_FEATURES: ["res3", "res4", "res5"]}}
  FPN: {{IN_FEATURES: ["res3", "res4", "res5"], OUT_CHANNELS: 16}}
  ANCHOR_GENERATOR: {{SIZES: [[16], [32], [64], [128]]}}
  RPN: {{IN_FEATURES: ["p3", "p4", "p5", "p6"], BATCH_SIZE_PER_IMAGE: 32,
         PRE_NMS_TOPK_TRAIN: 100, POST_NMS_TOPK_TRAIN: 50, PRE_NMS_TOPK_TEST: 100,
         POST_NMS_TOPK_TEST: 50}}
  ROI_HEADS: {{NAME: "{heads}", IN_FEATURES: ["p3", "p4", "p5"], BATCH_SIZE_PER_IMAGE: 32}}
  ROI_BOX_HEAD: {{FC_DIM: 32, PREDICTOR: "{predictor}"}}
DATASETS:
  TRAIN: ("voc:{root}:trainval",)
  TEST: ("voc:{root}:test",)
DATALOADER: {{NUM_WORKERS: 0}}
FEWSHOT:
  NOVEL_CLASSES: ["insulator", "bird_nest"]
  SHOTS: 2
  EPISODE: {{ENABLED: {episodes}, WAYS: 3, SHOTS: 1}}
  SUPPORT: {{SIZE: 64}}
  FINETUNE: {{TRAINABLE: {trainable}}}
INPUT: {{MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 128, MIN_SIZE_TEST: 64, MAX_SIZE_TEST: 128}}
SOLVER: {{IMS_PER_BATCH: 2, BASE_LR: 0.02, MAX_ITER: 3, STEPS: (), WARMUP_ITERS: 1,
         CHECKPOINT_PERIOD: 100, LOG_PERIOD: 1}}
OUTPUT_DIR: "{out}"
"""
SIAMESE = dict(arch="SiameseRCNN", heads="SiameseROIHeads",
               predictor="PrototypeCosineOutputLayers", episodes="True", trainable="[]",
               freeze_at=3)
TFA = dict(arch="GeneralizedRCNN", heads="StandardROIHeads",
           predictor="CosineSimOutputLayers", episodes="False", freeze_at=5,
           trainable='["^roi_heads\\\\.box_predictor\\\\."]')


@pytest.fixture(scope="module")
def edp(tmp_path_factory):
    return make_edp_tree(str(tmp_path_factory.mktemp("EDP")))


@pytest.fixture
def dataset_reads(monkeypatch):
    """{dataset name: times its records were loaded} while the test runs (each load reads
    the files, or deep-copies the catalog's cached records)."""
    reads = {}
    load = DatasetCatalog.load

    def counting(name, **options):
        reads[name] = reads.get(name, 0) + 1
        return load(name, **options)

    monkeypatch.setattr(DatasetCatalog, "load", counting)
    return reads


@pytest.fixture
def written_files():
    """Paths of the files opened for writing or renamed into place while the test runs."""
    paths, active = [], [True]

    def hook(event, args):
        if not active[0]:
            return
        if event == "open":
            path, mode, flags = args
            writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                      else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
            if writes and isinstance(path, (str, bytes, os.PathLike)):
                paths.append(os.fsdecode(path))
        elif event == "os.rename":
            paths.append(os.fsdecode(args[1]))

    sys.addaudithook(hook)  # audit hooks cannot be removed: this one is switched off below
    yield paths
    active[0] = False


def test_zero_novel_ap_warns_loudly(caplog):
    with caplog.at_level(logging.WARNING), pytest.warns(FewShotWarning, match="nAP50 = 0"):
        assert warn_if_no_novel_ap({"nAP": 0.0, "nAP50": 0.0, "bAP50": 0.7}, "10-shot seed 1")
    assert "!!!!" in caplog.text and "surgery" in caplog.text
    assert not warn_if_no_novel_ap({"nAP": 0.01, "nAP50": 0.2}, "x")
    assert not warn_if_no_novel_ap({"AP50": 0.0}, "no novel classes")  # no novel keys


def base_checkpoint(path, siamese):
    """A base model of other classes, saved as tools/train_net.py saves it."""
    model = tiny_model(num_classes=len(BASE_CLASSES), siamese=siamese)
    torch.save({"model": model.state_dict(), "iteration": 10,
                "extra": {"thing_classes": BASE_CLASSES}}, path)
    return model.state_dict()


def write_config(tmp_path, edp, kind, name):
    weights = str(tmp_path / f"base_{name}.pth")
    base = base_checkpoint(weights, siamese=kind is SIAMESE)
    path = tmp_path / f"{name}.yaml"
    path.write_text(YAML.format(root=edp, weights=weights, out=tmp_path / name, **kind))
    return str(path), base


def test_finetune_tool_siamese_edp(edp, tmp_path):
    config, base = write_config(tmp_path, edp, SIAMESE, "siamese")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "finetune_fewshot.py"), "--config", config,
         "--shots", "2", "--seeds", "0", "1", "SOLVER.MAX_ITER", "2"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "siamese"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shots"] == 2 and summary["seeds"] == [0, 1]
    assert format_summary(summary) in proc.stdout  # the table of the summary it wrote
    results = [json.loads((out / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
    for seed, res in zip((0, 1), results):
        assert res["seed"] == seed and res["metrics"] == summary["per_seed"][str(seed)]
        assert (out / "splits" / f"seed{seed}" / "box_2shot_insulator_train.txt").is_file()
    for key in ("nAP50", "bAP50", "AP50", "nAP"):
        values = [res["metrics"][key] for res in results]
        assert summary["metrics"][key]["values"] == values
        assert summary["metrics"][key]["mean"] == pytest.approx(sum(values) / 2)
        assert summary["metrics"][key]["std"] == pytest.approx(abs(values[0] - values[1])
                                                               / 2 ** 0.5)
    # surgery: the base class row was copied, the novel rows start empty
    final = torch.load(out / "seed0" / "model_final.pth", weights_only=True)
    assert final["extra"]["thing_classes"] == ["pole", "insulator", "bird_nest"]
    # FREEZE_AT 3: stem, layer1, layer2 bit-identical to the base; layer3, layer4 trained
    weights = final["model"]
    for prefix in ("backbone.body.conv1.", "backbone.body.bn1.", "backbone.body.layer1.",
                   "backbone.body.layer2."):
        names = [k for k in base if k.startswith(prefix) and "num_batches" not in k]
        assert names and all(torch.equal(weights[k], base[k]) for k in names), prefix
    for prefix in ("backbone.body.layer3.", "backbone.body.layer4."):
        assert not torch.equal(weights[prefix + "0.conv1.weight"], base[prefix + "0.conv1.weight"])


def test_split_files_are_deterministic_per_seed(edp, tmp_path):
    config, _ = write_config(tmp_path, edp, SIAMESE, "splits")
    cfg = load_config(config, [])
    files = {}
    for run in ("a", "b"):
        for seed in (0, 1):
            scfg = seed_config(cfg, 2, seed)
            scfg.defrost()
            scfg.FEWSHOT.SPLIT_DIR = str(tmp_path / run)
            records, _ = training_records(scfg)
            assert sum(len(r["annotations"]) for r in records) == 6  # 2 shots x 3 classes
            path = tmp_path / run / f"seed{seed}" / "box_2shot_bird_nest_train.txt"
            files[run, seed] = path.read_text()
    assert files["a", 0] == files["b", 0] and files["a", 1] == files["b", 1]
    assert files["a", 0] != files["a", 1]  # another seed, another split


def test_support_only_evaluation(edp, tmp_path):
    config, _ = write_config(tmp_path, edp, SIAMESE, "support")
    cfg = load_config(config, [])
    summary = run_fewshot(cfg, 2, [0], support_only=True)
    assert summary["mode"] == "support_only"
    prototypes = str(tmp_path / "support" / "seed0" / "prototypes.pth")
    bank = torch.load(prototypes, weights_only=True)
    assert bank["count"].tolist() == [0, 1, 1]  # novel classes from supports only
    # the saved prototypes reproduce the reported numbers exactly
    scfg = seed_config(cfg, 2, 0)
    _, metadata = training_records(scfg)
    model = build_model(scfg)
    load_with_surgery(scfg, metadata, model, scfg.MODEL.WEIGHTS)
    model.load_prototypes(prototypes)
    again = evaluate_model(scfg, model, tag="check")[scfg.DATASETS.TEST[0]]
    assert {k: again[k] for k in summary["per_seed"]["0"]} == summary["per_seed"]["0"]
    assert summary["metrics"]["nAP50"]["values"] == [again["nAP50"]] and again["nAP50"] > 0


def test_tfa_baseline_finetunes_only_the_predictor(edp, tmp_path, written_files):
    config, base = write_config(tmp_path, edp, TFA, "tfa")
    # every score kept: the 3-iteration model then has predictions to compare
    cfg = load_config(config, ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    summary = run_fewshot(cfg, 2, [0])
    final_path = str(tmp_path / "tfa" / "seed0" / "model_final.pth")
    # the surgered weights went into the model in memory: no weights file but checkpoints
    assert final_path in written_files
    assert not [p for p in written_files if "surgery" in os.path.basename(p)]
    # the reported numbers are those of the final weights
    scfg = seed_config(cfg, 2, 0)
    model = build_model(scfg)
    assert load_weights(model, final_path).missing == []
    again = evaluate_model(scfg, model, tag="check")[scfg.DATASETS.TEST[0]]
    assert {k: again[k] for k in summary["per_seed"]["0"]} == summary["per_seed"]["0"]
    predictions = {tag: json.loads(path.read_text()) for tag in ("inference", "check")
                   for path in (tmp_path / "tfa" / "seed0" / tag).glob("*/predictions.json")}
    assert predictions["inference"] and predictions["check"] == predictions["inference"]
    weights = torch.load(final_path, weights_only=True)["model"]
    frozen = [k for k in base if not k.startswith("roi_heads.box_predictor.")
              and "num_batches" not in k]
    assert frozen and all(torch.equal(weights[k], base[k]) for k in frozen)
    w = weights["roi_heads.box_predictor.cls_score.weight"]
    assert w.shape == (4, 32)  # background + pole, insulator, bird_nest (base had 2 classes)
    base_w = base["roi_heads.box_predictor.cls_score.weight"]
    assert not torch.equal(w[:2], base_w[:2])  # copied, then fine-tuned
    # the support-only mode names what it needs: supports, or a cosine classifier
    with pytest.raises(ValueError, match="imprinting needs a cosine box classifier: MODEL."
                                         "ROI_BOX_HEAD.PREDICTOR CosineSimOutputLayers"):
        run_fewshot(load_config(config, ["OUTPUT_DIR", str(tmp_path / "x"),
                                         "MODEL.ROI_BOX_HEAD.PREDICTOR",
                                         "FastRCNNOutputLayers"]), 2, [0], support_only=True)


def _unit_mean(feats, centre=0.0):
    """The imprinted row's direction: the mean unit feature, minus the proposals' one."""
    unit = feats / (feats.norm(dim=1, keepdim=True) + 1e-5)
    mean = unit.mean(0) - centre
    return mean / mean.norm()


def test_tfa_support_only_imprints_the_new_classes(edp, tmp_path):
    from fewshot_det.data.mapper import DatasetMapper
    from fewshot_det.data.transforms import transforms_from_config
    from fewshot_det.modeling.fewshot.imprint import example_box_features, mean_direction

    config, base = write_config(tmp_path, edp, TFA, "imprint")
    cfg = load_config(config, [])
    summary = run_fewshot(cfg, 2, [0], support_only=True)
    assert summary["mode"] == "support_only"
    scfg = seed_config(cfg, 2, 0)
    saved = torch.load(tmp_path / "imprint" / "seed0" / "model_final.pth", weights_only=True)
    rows = saved["model"]["roi_heads.box_predictor.cls_score.weight"]
    # pole (base) keeps the checkpoint's row; the novel rows are their K shots' direction
    assert torch.equal(rows[1], base["roi_heads.box_predictor.cls_score.weight"][1])
    records, metadata = training_records(scfg)
    model = build_model(scfg)
    load_weights(model, str(tmp_path / "imprint" / "seed0" / "model_final.pth"))
    mapper = DatasetMapper(transforms=transforms_from_config(scfg, is_train=False),
                           image_format="BGR", keep_annotations=True)
    new = {metadata.thing_classes.index(n) + 1 for n in ("insulator", "bird_nest")}
    images = [r for r in records if any(a["category_id"] in new for a in r["annotations"])]
    feats, proposals = example_box_features(
        model, [mapper(r, np.random.default_rng(0)) for r in images])
    centre = mean_direction(proposals)  # of the images that show the imprinted classes
    for k, name in enumerate(metadata.thing_classes, start=1):
        if name in ("insulator", "bird_nest"):
            assert len(feats[k]) == 2  # 2 shots
            direction = rows[k] / rows[k].norm()
            torch.testing.assert_close(direction, _unit_mean(feats[k], centre), atol=1e-5, rtol=0)
    # and the reported numbers are those of the saved model
    again = evaluate_model(scfg, model, tag="check")[scfg.DATASETS.TEST[0]]
    assert {k: again[k] for k in summary["per_seed"]["0"]} == summary["per_seed"]["0"]


def test_tfa_finetune_starts_from_imprinted_rows_when_asked(edp, tmp_path, monkeypatch):
    from fewshot_det.engine import fewshot

    calls = []
    real = fewshot.imprint_kshot
    monkeypatch.setattr(fewshot, "imprint_kshot",
                        lambda *a, **k: calls.append(sorted(a[4])) or real(*a, **k))
    config, _ = write_config(tmp_path, edp, TFA, "init")
    run_fewshot(load_config(config, ["SOLVER.MAX_ITER", "1"]), 2, [0])
    assert calls == []  # the default: TFA's random rows
    for which, expected in (("new", ["bird_nest", "insulator"]),
                            ("all", ["bird_nest", "insulator", "pole"])):
        calls.clear()
        run_fewshot(load_config(config, ["SOLVER.MAX_ITER", "1", "OUTPUT_DIR",
                                         str(tmp_path / which),
                                         "FEWSHOT.FINETUNE.NOVEL_INIT", "imprint",
                                         "FEWSHOT.FINETUNE.IMPRINT_CLASSES", which]), 2, [0])
        assert calls == [expected]


def test_resume_reads_finished_seeds_and_continues_the_interrupted_one(edp, tmp_path, caplog,
                                                                      dataset_reads):
    config, _ = write_config(tmp_path, edp, TFA, "resume")
    cfg = load_config(config, ["SOLVER.CHECKPOINT_PERIOD", "2"])
    train_name = cfg.DATASETS.TRAIN[0]
    dataset_reads.clear()
    first = run_fewshot(cfg, 2, [0, 1])
    assert dataset_reads[train_name] == 2  # once per seed: the split and the loader share it
    out = tmp_path / "resume"
    done = (out / "seed0" / "results.json").stat().st_mtime_ns
    # seed 1 "killed" after its iteration-2 checkpoint: no results, no final weights
    (out / "seed1" / "results.json").unlink()
    (out / "seed1" / "model_final.pth").unlink()
    (out / "seed1" / "last_checkpoint").write_text("model_0000001.pth")
    with caplog.at_level("INFO"):
        again = run_fewshot(cfg, 2, [0, 1], resume=True)
    assert dataset_reads[train_name] == 3  # seed 0 read back from results.json
    assert (out / "seed0" / "results.json").stat().st_mtime_ns == done
    assert "seed 0: finished before" in caplog.text
    assert "resumed from" in caplog.text and "model_0000001.pth at iteration 2" in caplog.text
    assert again["metrics"]["AP50"]["values"][0] == first["metrics"]["AP50"]["values"][0]
    assert (out / "seed1" / "results.json").is_file()
    # a finished seed of another experiment is not silently mixed in
    with pytest.raises(ValueError, match="another config .*MAX_ITER"):
        run_fewshot(load_config(config, ["SOLVER.CHECKPOINT_PERIOD", "2",
                                         "SOLVER.MAX_ITER", "4"]), 2, [0], resume=True)
    with pytest.raises(ValueError, match="used mode 'finetune', not 'support_only'"):
        run_fewshot(cfg, 2, [0], resume=True, support_only=True)
