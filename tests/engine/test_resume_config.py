"""--resume compares the config that wrote the checkpoint with the current one."""
import argparse
import logging

import pytest
import torch

from fewshot_det import get_cfg
from fewshot_det.engine import defaults, train_loop
from fewshot_det.engine.checkpoint import Checkpointer
from fewshot_det.engine.optim import build_lr_scheduler, build_optimizer
from fewshot_det.engine.resume_config import config_changes
from tiny_datasets import make_voc
from toy_model import ToyDetector


@pytest.fixture(scope="module")
def voc_spec(tmp_path_factory):
    root = make_voc(tmp_path_factory.mktemp("voc"), {
        f"im{i}": (48, 40, [("dog", [2 + i, 3, 30, 30 + i % 5], 0)]) for i in range(6)},
        classes=["dog"])
    return f"voc:{root}:train"


def make_cfg(voc_spec, out, *opts):
    cfg = get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('{voc_spec}',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(24,)", "INPUT.MAX_SIZE_TRAIN", "48",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.05",
        "SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.LR_FACTORS", "[['^fc', 0.5]]",
        "OUTPUT_DIR", str(out), *opts])
    cfg.freeze()
    return cfg


def lrs_seen(monkeypatch):
    """iteration -> the groups' lrs used by that step."""
    seen, step = {}, train_loop.train_step

    def spy(model, batch, optimizer, *, iteration, **kw):
        seen[iteration] = sorted(g["lr"] for g in optimizer.param_groups)
        return step(model, batch, optimizer, iteration=iteration, **kw)

    monkeypatch.setattr(train_loop, "train_step", spy)
    return seen


def test_changed_base_lr_takes_effect_and_is_logged(voc_spec, tmp_path, monkeypatch, caplog):
    train_loop.train(make_cfg(voc_spec, tmp_path), ToyDetector())
    cfg = make_cfg(voc_spec, tmp_path, "SOLVER.BASE_LR", "0.005", "SOLVER.MAX_ITER", "8")
    seen = lrs_seen(monkeypatch)
    with caplog.at_level(logging.INFO):
        train_loop.train(cfg, ToyDetector(), resume=True)
    assert "resume: SOLVER.BASE_LR 0.05 -> 0.005 takes effect" in caplog.text
    assert "resume: SOLVER.MAX_ITER 3 -> 8 takes effect" in caplog.text
    # the lrs of a run that had the new config from the start, per group (fc: x 0.5)
    optimizer = build_optimizer(cfg, ToyDetector())
    sched = build_lr_scheduler(cfg, optimizer)
    expected = {}
    for it in range(8):
        expected[it] = sorted(sched.get_last_lr())
        optimizer.step()  # no gradients: only keeps the scheduler's call order
        sched.step()
    assert sorted(seen) == list(range(3, 8))
    for it in range(3, 8):
        assert seen[it] == pytest.approx(expected[it], rel=1e-12), it
    assert seen[3] == pytest.approx([0.0025, 0.005])
    assert open(tmp_path / "config.yaml").read() == cfg.dump()


def test_unchanged_config_resumes_silently(voc_spec, tmp_path, caplog):
    cfg = make_cfg(voc_spec, tmp_path)
    train_loop.train(cfg, ToyDetector())
    with caplog.at_level(logging.INFO):
        train_loop.train(cfg, ToyDetector(), resume=True)
    assert "resume: " not in caplog.text and "resumed from" in caplog.text


@pytest.mark.parametrize("key, old, new, why", [
    ("MODEL.RESNETS.DEPTH", "50", "18", ""),
    ("INPUT.MAX_SIZE_TRAIN", "48", "64", ""),
    ("SOLVER.IMS_PER_BATCH", "2", "4", " (the data position is counted in images)"),
])
def test_changed_model_data_or_batch_key_is_refused(voc_spec, tmp_path, key, old, new, why):
    train_loop.train(make_cfg(voc_spec, tmp_path, key, old), ToyDetector())
    saved = open(tmp_path / "config.yaml").read()
    cfg = make_cfg(voc_spec, tmp_path, key, new)
    ckpt = tmp_path / "model_final.pth"
    msg = (f"--resume: {ckpt} was trained with {key} {old}, the config says {new}{why}; "
           f"use another OUTPUT_DIR or the old value")
    with pytest.raises(ValueError) as err:
        train_loop.train(cfg, ToyDetector(), resume=True)
    assert str(err.value) == msg
    assert open(tmp_path / "config.yaml").read() == saved  # still the run's true config


def test_moved_output_dir_resumes(voc_spec, tmp_path):
    train_loop.train(make_cfg(voc_spec, tmp_path / "a"), ToyDetector())
    (tmp_path / "a").rename(tmp_path / "b")
    cfg = make_cfg(voc_spec, tmp_path / "b", "SOLVER.MAX_ITER", "4")
    train_loop.train(cfg, ToyDetector(), resume=True)
    assert torch.load(tmp_path / "b" / "model_final.pth", weights_only=True)["iteration"] == 4


def test_a_state_that_does_not_fit_names_checkpoint_and_object(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = Checkpointer(str(tmp_path), {"model": model}).save("model_0000001", 2)
    other = Checkpointer(str(tmp_path), {"model": torch.nn.Linear(2, 3)})
    with pytest.raises(ValueError, match=r"^--resume: the model state in .*model_0000001\.pth "
                                         r"does not fit this run \(Error"):
        other.resume(path)


def test_config_changes_ignore_output_dir_and_tuple_vs_list():
    a, b = get_cfg(), get_cfg()
    b.OUTPUT_DIR, b.SOLVER.STEPS = "elsewhere", tuple(a.SOLVER.STEPS)
    assert config_changes(a.dump(), b.dump()) == {}
    b.SOLVER.WEIGHT_DECAY = 0.5
    assert config_changes(a.dump(), b.dump()) == {"SOLVER.WEIGHT_DECAY": (0.0001, 0.5)}


def test_default_setup_leaves_config_to_the_resume_check(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "setup_logging", lambda *a, **k: None)
    cfg = get_cfg()
    cfg.OUTPUT_DIR, cfg.SEED = str(tmp_path), -1
    first = defaults.default_setup(cfg.clone(), argparse.Namespace(resume=False))
    saved = open(tmp_path / "config.yaml").read()
    assert saved == first.dump()
    Checkpointer(str(tmp_path), {"model": torch.nn.Linear(1, 1)}).save("model_0000001", 2)
    cfg.SOLVER.BASE_LR = 0.001
    again = defaults.default_setup(cfg.clone(), argparse.Namespace(resume=True))
    assert again.SEED == first.SEED  # a drawn seed is drawn once per run
    assert open(tmp_path / "config.yaml").read() == saved  # train() writes it after the check
