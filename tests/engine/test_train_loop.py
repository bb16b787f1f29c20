import json
import os

import pytest
import torch

from fewshot_det import get_cfg
from fewshot_det.engine import train_loop
from fewshot_det.engine.checkpoint import Checkpointer
from tiny_datasets import make_voc
from toy_model import ToyDetector


@pytest.fixture(scope="module")
def voc_spec(tmp_path_factory):
    root = make_voc(tmp_path_factory.mktemp("voc"), {
        f"im{i}": (48, 40, [("dog", [2 + i, 3, 30, 30 + i % 5], 0)] if i % 4 else [])
        for i in range(10)}, classes=["dog"])
    return f"voc:{root}:train"


def make_cfg(voc_spec, out, **solver):
    cfg = get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('{voc_spec}',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(24, 32)", "INPUT.MAX_SIZE_TRAIN", "64",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.05",
        "SOLVER.MAX_ITER", "8", "SOLVER.STEPS", "(5,)", "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.LOG_PERIOD", "1", "OUTPUT_DIR", str(out),
        "SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.WARMUP", "3",
        "SOLVER.CLIP_GRADIENTS.ENABLED", "True"])
    for k, v in solver.items():
        cfg.SOLVER[k] = v
    return cfg


def toy(seed=0, **kw):
    torch.manual_seed(seed)
    return ToyDetector(**kw)


def test_resume_is_bit_identical(voc_spec, tmp_path, monkeypatch):
    full = toy()
    train_loop.train(make_cfg(voc_spec, tmp_path / "full"), full)

    # Same run, killed during iteration 5 (after the checkpoint at 3 iterations).
    real_step = train_loop.train_step

    def dying_step(model, batch, optimizer, *, iteration, **kw):
        if iteration == 5:
            raise KeyboardInterrupt
        return real_step(model, batch, optimizer, iteration=iteration, **kw)

    monkeypatch.setattr(train_loop, "train_step", dying_step)
    cfg = make_cfg(voc_spec, tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        train_loop.train(cfg, toy())
    monkeypatch.setattr(train_loop, "train_step", real_step)
    assert open(tmp_path / "cut" / "last_checkpoint").read() == "model_0000002.pth"

    resumed = toy(seed=123)  # different init: everything must come from the checkpoint
    torch.manual_seed(999)   # and the RNG too
    train_loop.train(cfg, resumed, resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    ema_a = torch.load(tmp_path / "full" / "model_final.pth", weights_only=True)["ema"]
    ema_b = torch.load(tmp_path / "cut" / "model_final.pth", weights_only=True)["ema"]
    assert ema_a["updates"] == ema_b["updates"] == 8
    for k in ema_a["model"]:
        assert torch.equal(ema_a["model"][k], ema_b["model"][k]), k


def test_outputs_and_keep_last_n(voc_spec, tmp_path):
    cfg = make_cfg(voc_spec, tmp_path, MAX_ITER=10, CHECKPOINT_PERIOD=2, MAX_TO_KEEP=2)
    train_loop.train(cfg, toy())
    files = sorted(os.listdir(tmp_path))
    # the full state at the end (model_0000009) counts among the MAX_TO_KEEP periodic ones
    assert [f for f in files if f.startswith("model_0")] == ["model_0000007.pth",
                                                            "model_0000009.pth"]
    assert "model_final.pth" in files and open(tmp_path / "last_checkpoint").read() == \
        "model_final.pth"
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [x["iteration"] for x in lines] == list(range(1, 11))
    assert {"loss_box", "loss_aux", "total_loss", "lr", "time", "data_time"} <= set(lines[0])
    assert lines[0]["lr"] < lines[3]["lr"]  # warm-up
    assert lines[-1]["lr"] == pytest.approx(0.005)  # after the step at 5, gamma 0.1
    ckpt = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 10 and ckpt["extra"]["thing_classes"] == ["dog"]


def test_model_final_holds_weights_class_names_and_config_only(voc_spec, tmp_path):
    from fewshot_det.checkpoint.class_names import saved_class_names

    cfg = make_cfg(voc_spec, tmp_path)
    model = toy()
    train_loop.train(cfg, model)
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert sorted(final) == ["ema", "extra", "iteration", "model"]  # no optimizer, RNG ...
    assert final["iteration"] == 8 and final["extra"]["config"] == cfg.dump()
    assert saved_class_names(str(tmp_path / "model_final.pth")) == ["dog"]
    shipped = toy(seed=1)
    shipped.load_state_dict(final["model"])  # strict: every weight, nothing else
    for k, v in model.state_dict().items():
        assert torch.equal(shipped.state_dict()[k], v), k
    # the full state stays beside it, for --resume
    last = torch.load(tmp_path / "model_0000007.pth", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= set(last) and last["iteration"] == 8


def test_a_finished_run_resumes_as_finished_or_trains_on(voc_spec, tmp_path, monkeypatch):
    full = toy()
    train_loop.train(make_cfg(voc_spec, tmp_path / "full"), full)
    cfg = make_cfg(voc_spec, tmp_path / "short", MAX_ITER=6)
    train_loop.train(cfg, toy())
    # a larger MAX_ITER trains on from the full state: as if it had never stopped
    longer = make_cfg(voc_spec, tmp_path / "short")
    extended = toy(seed=1)
    train_loop.train(longer, extended, resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(extended.state_dict()[k], v), k
    # resumed again, the finished run loads its weights and trains nothing, writes nothing
    files = {f: (tmp_path / "short" / f).read_bytes() for f in os.listdir(tmp_path / "short")
             if f.endswith(".pth")}
    monkeypatch.setattr(train_loop, "train_step", None)
    again = toy(seed=2)
    train_loop.train(longer, again, resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    assert {f: (tmp_path / "short" / f).read_bytes() for f in files} == files
    # without the full state, it cannot train on
    for f in files:
        if f.startswith("model_0"):
            os.remove(tmp_path / "short" / f)
    with pytest.raises(ValueError, match=r"model_final\.pth holds the weights of a run "
                                         r"finished at iteration 8, not its optimizer state"):
        train_loop.train(make_cfg(voc_spec, tmp_path / "short", MAX_ITER=9), toy(),
                         resume=True)


def test_nan_guard_names_iteration_terms_and_images(voc_spec, tmp_path):
    cfg = make_cfg(voc_spec, tmp_path)
    with pytest.raises(FloatingPointError, match=r"iteration 2: loss_box=nan, loss_aux=.*"
                                                 r"images in this batch: \['im"):
        train_loop.train(cfg, toy(nan_at_call=3))


def test_half_written_checkpoint_never_replaces_good_one(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ck = Checkpointer(str(tmp_path), {"model": model})
    good = ck.save("model_0000001", 2)
    before = open(good, "rb").read()

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        model.weight.add_(1)
    with pytest.raises(OSError, match="disk full"):
        ck.save("model_0000001", 4)
    with pytest.raises(OSError):
        ck.save("model_0000003", 4)
    assert open(good, "rb").read() == before
    assert open(tmp_path / "last_checkpoint").read() == "model_0000001.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert ck.last_checkpoint() == good


def test_resume_without_checkpoint_starts_fresh_and_rejects_weights_only(tmp_path):
    model = torch.nn.Linear(2, 2)
    ck = Checkpointer(str(tmp_path), {"model": model, "optimizer":
                                      torch.optim.SGD(model.parameters(), lr=0.1)})
    assert ck.last_checkpoint() is None
    torch.save({"model": model.state_dict()}, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=r"w\.pth lacks \['optimizer'\]"):
        ck.resume(str(tmp_path / "w.pth"))


def test_a_checkpoint_is_never_written_from_non_finite_weights(tmp_path):
    model = toy()
    ckpt = Checkpointer(str(tmp_path), {"model": model})
    good = ckpt.save("model_0000001", 2)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"1 of \d+ tensors are NaN/inf after "
                                                 r"iteration 3 .*model_0000001\.pth is kept"):
        ckpt.save("model_0000002", 3)
    assert not os.path.exists(tmp_path / "model_0000002.pth")
    assert ckpt.last_checkpoint() == good
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]


def _after_step(monkeypatch, at: int, change) -> None:
    """Make the training step of iteration ``at`` end with ``change(model)`` (no grad)."""
    step = train_loop.train_step

    def changed_step(model, batch, optimizer, *, iteration, **kw):
        stats = step(model, batch, optimizer, iteration=iteration, **kw)
        if iteration == at:
            with torch.no_grad():
                change(model)
        return stats

    monkeypatch.setattr(train_loop, "train_step", changed_step)


def test_a_diverged_run_keeps_its_last_good_checkpoint(voc_spec, tmp_path, monkeypatch):
    # The step of iteration 4 leaves NaN weights with a finite loss (what a too-large LR
    # does): the checkpoint due right after it must not be written.
    _after_step(monkeypatch, 4, lambda model: next(model.parameters()).fill_(float("nan")))
    cfg = make_cfg(voc_spec, tmp_path, CHECKPOINT_PERIOD=1, MAX_TO_KEEP=0)
    with pytest.raises(FloatingPointError, match=r"after iteration 5 .*model_0000003\.pth "
                                                 r"is kept .* --resume"):
        train_loop.train(cfg, toy())
    assert Checkpointer(str(tmp_path), {}).last_checkpoint() == str(tmp_path / "model_0000003.pth")
    assert not os.path.exists(tmp_path / "model_0000004.pth")
    state = torch.load(tmp_path / "model_0000003.pth", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    monkeypatch.undo()  # the advice works: --resume continues from model_0000003 to the end
    model = toy(seed=1)
    train_loop.train(cfg, model, resume=True)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert os.path.exists(tmp_path / "model_final.pth")


def test_a_fresh_start_never_replaces_an_earlier_runs_checkpoints(voc_spec, tmp_path):
    cfg = make_cfg(voc_spec, tmp_path)
    train_loop.train(cfg, toy())
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path) if f.endswith(".pth")}
    assert "model_final.pth" in before and "model_0000005.pth" in before
    with pytest.raises(ValueError, match=r"holds the checkpoints of a run \(model_final\.pth, "
                                         r"model_0000007\.pth, model_0000005\.pth.*--resume"
                                         r".*--overwrite"):
        train_loop.train(cfg, toy(seed=1))
    assert {f: (tmp_path / f).read_bytes() for f in before} == before
    # --overwrite starts over: the earlier run's files are gone, not mixed with the new ones
    short = make_cfg(voc_spec, tmp_path, MAX_ITER=4, STEPS=(3,))
    train_loop.train(short, toy(seed=1), overwrite=True)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        "model_0000002.pth", "model_0000003.pth", "model_final.pth"]
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 4


def test_default_setup_refuses_before_touching_an_earlier_run(voc_spec, tmp_path):
    import argparse

    from fewshot_det.engine.defaults import default_setup

    cfg = make_cfg(voc_spec, tmp_path)
    (tmp_path / "model_final.pth").write_bytes(b"x")
    (tmp_path / "config.yaml").write_text("earlier run\n")
    args = argparse.Namespace(resume=False, overwrite=False, eval_only=False)
    with pytest.raises(ValueError, match="holds the checkpoints"):
        default_setup(cfg, args)
    assert (tmp_path / "config.yaml").read_text() == "earlier run\n"
    assert not (tmp_path / "log.txt").exists()
    default_setup(cfg, argparse.Namespace(resume=False, overwrite=False, eval_only=True))
    assert (tmp_path / "config.yaml").read_text() == "earlier run\n"  # evaluation only


def test_overwrite_lists_what_it_deletes_and_starts_the_logs_anew(voc_spec, tmp_path, caplog):
    import argparse

    from fewshot_det.engine.defaults import default_setup, release_output_dirs

    cfg = make_cfg(voc_spec, tmp_path)
    earlier = ["model_final.pth", "model_0000005.pth", "model_best.pth", "last_checkpoint",
               "metrics.jsonl", "log.txt"]
    for name in earlier:
        (tmp_path / name).write_text("earlier run\n")
    (tmp_path / "notes.txt").write_text("the user's\n")
    args = argparse.Namespace(resume=False, overwrite=True, eval_only=False)
    with caplog.at_level("WARNING"):
        default_setup(cfg, args)
    release_output_dirs()
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert all(name in warned for name in earlier), warned
    assert not any((tmp_path / n).exists() for n in earlier if n != "log.txt")
    log = tmp_path / "log.txt"  # a new log (none when this process logs elsewhere already)
    assert not log.exists() or "earlier run" not in log.read_text()
    assert (tmp_path / "notes.txt").read_text() == "the user's\n"  # not a run file


def test_blown_up_but_finite_weights_never_reach_a_checkpoint(voc_spec, tmp_path, monkeypatch):
    # The step of iteration 4 leaves finite weights 1e4 times too large (a much too large LR):
    # every later loss is finite but huge. The checkpoints staged from those weights are
    # dropped, model_final is refused, and resuming from the last sane one completes.
    _after_step(monkeypatch, 4, lambda model: model.fc.weight.mul_(1e4))
    cfg = make_cfg(voc_spec, tmp_path, CHECKPOINT_PERIOD=1, MAX_TO_KEEP=0)
    with pytest.raises(FloatingPointError, match=r"last iteration 7, the loss .* is .*x the "
                                                 r"median .*model_final is not written.*"
                                                 r"model_0000003\.pth is kept.*--resume"):
        train_loop.train(cfg, toy())
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        f"model_000000{i}.pth" for i in range(4)]
    assert Checkpointer(str(tmp_path), {}).last_checkpoint() == str(tmp_path / "model_0000003.pth")
    monkeypatch.undo()
    model = toy(seed=1)
    train_loop.train(cfg, model, resume=True)
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["model"]["fc.weight"].abs().max() < 10


def test_loss_watch_flags_non_finite_and_exploded_losses_only():
    from fewshot_det.engine.divergence import LossWatch

    watch = LossWatch(factor=100, window=3)
    assert watch.problem(5.0) is None  # the first loss has nothing to compare with
    assert [watch.problem(v) for v in (2.0, 1.0, 0.5)] == [None] * 3  # training, not diverging
    assert "is 400x the median 1 of the last 3" in watch.problem(400.0)
    assert watch.problem(float("nan")) == "the loss is nan"
    assert watch.problem(99.0) is None  # flagged losses never raised the median
    for i in range(3):
        assert not watch.diverged()
        watch.problem(1e6)
    assert watch.diverged()  # exploded for a whole window: the run stops
    assert LossWatch(factor=0).problem(1e30) is None


def test_each_evaluation_table_names_the_weights_it_scored(voc_spec, tmp_path, monkeypatch,
                                                           caplog):
    # A run with an EMA logs two tables: each title says which weights it scored.
    cfg = make_cfg(voc_spec, tmp_path / "ema")
    cfg.DATASETS.TEST = (voc_spec,)
    with caplog.at_level("INFO", logger="fewshot_det.engine.inference"):
        final = train_loop.train(cfg, toy())
    titles = [r.getMessage().splitlines()[0] for r in caplog.records
              if r.getMessage().startswith("evaluation of")]
    assert len(titles) == 2 and set(final) == {voc_spec, f"{voc_spec}@ema"}
    assert "the raw weights" in titles[0] and "EMA" not in titles[0]
    assert "the EMA weights (SOLVER.EMA.DECAY" in titles[1]
