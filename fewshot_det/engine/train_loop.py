"""The training loop, readable top to bottom: ``_train``, and a helper per concern.

    _build_run        optimizer, schedule, EMA, AMP scaler, checkpointer
    _start            resume, or load MODEL.WEIGHTS (+ crop warm-up); config.yaml
    _training_data    the model (in DDP with several processes) and its batches
    each iteration    _guarded_step (forward, all-reduced NaN guard, backward, clip, step)
                      -> _watch_loss (divergence; writes or drops the staged checkpoint)
                      -> schedule, EMA -> log (metrics.jsonl, TensorBoard, progress bar)
                      -> _checkpoint_and_evaluate
    _finish           model_final.pth (weights, class names, config) and the final
                      evaluation under OUTPUT_DIR/inference/
"""
from __future__ import annotations

import logging
import os
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..data.build import (build_test_loader_from_config, build_train_loader_from_config,
                          training_records)
from ..utils.files import atomic_write_text
from .checkpoint import (FINAL, Checkpointer, check_fresh_start, rng_state, set_rng_state,
                         unwrap)
from .comm import all_gather_objects, is_main_process, reduce_mean
from .crop_pretrain import pretrain_backbone_on_crops
from .ddp import wrap_ddp
from .divergence import LossWatch
from .ema import ModelEMA
from .events import MetricsWriter, Progress
from .inference import evaluate_and_save, inference_on_dataset
from .optim import (LRMultiplier, apply_hyperparameters, build_lr_scheduler,
                    build_optimizer, config_hyperparameters)
from .resume_config import check_resume_config, saved_config_text
from .run_lock import RunLock

logger = logging.getLogger(__name__)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(unwrap(model).parameters()).device


def check_finite(losses: Dict[str, torch.Tensor], iteration: int, batch: List[dict]) -> None:
    """Raise ``FloatingPointError`` on every rank if any rank's loss is NaN/inf.

    The loss values are averaged over ranks first, so all ranks agree and raise together
    (one rank raising alone would leave the others waiting in the next all-reduce).
    """
    values = reduce_mean(torch.stack([v.detach().float() for v in losses.values()]))
    if torch.isfinite(values).all():
        return
    ids = [i for part in all_gather_objects([x.get("image_id") for x in batch]) for i in part]
    terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(losses, values.tolist()))
    raise FloatingPointError(
        f"loss became non-finite at iteration {iteration}: {terms}; images in this batch: "
        f"{ids} (if the run was stable so far, check these images' boxes)")


def amp_context(cfg, device: torch.device):
    if cfg.SOLVER.AMP.ENABLED and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, cfg.SOLVER.AMP.DTYPE))
    return nullcontext()


def train_step(model, batch, optimizer, *, cfg, iteration: int, scaler=None
               ) -> Dict[str, float]:
    """One optimisation step; returns the (rank-averaged) loss values."""
    with amp_context(cfg, model_device(model)):
        losses = model(batch)
    check_finite(losses, iteration, batch)
    total = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
    else:
        total.backward()
    if cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        torch.nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]],
            cfg.SOLVER.CLIP_GRADIENTS.MAX_NORM)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    reduced = reduce_mean(torch.stack([v.detach().float() for v in losses.values()]))
    out = dict(zip(losses, reduced.tolist()))
    out["total_loss"] = sum(out.values())
    return out


def dataset_dirname(name: str) -> str:
    """A folder name for a dataset name or spec (specs hold ':' and '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def evaluate_model(cfg, model, *, tag: str = "inference", plots: bool = False,
                   weights: str = "") -> Dict[str, Dict[str, float]]:
    """Evaluate on each of ``DATASETS.TEST``; writes ``OUTPUT_DIR/<tag>/<dataset>/`` (with
    ``plots``, the PR curves and example detections too: ``engine.inference``).
    ``weights`` names what is scored in the logged table (e.g. "the EMA weights")."""
    all_metrics = {}
    state = rng_state()  # evaluation must not shift the training run's random stream
    from .slicing import for_inference

    for name in cfg.DATASETS.TEST:
        runner, mapper = for_inference(cfg, model)
        loader, records, metadata = build_test_loader_from_config(cfg, name, mapper)
        results = inference_on_dataset(runner, loader, metadata,
                                       desc=f"eval {name}")
        out_dir = os.path.join(cfg.OUTPUT_DIR, tag, dataset_dirname(name))
        all_metrics[name] = evaluate_and_save(records, metadata, results, out_dir,
                                              score_thresh=cfg.TEST.PR_SCORE_THRESH,
                                              plots=plots, weights=weights)
    set_rng_state(state)
    return all_metrics


def train(cfg, model: torch.nn.Module, *, resume: bool = False, load_weights=None,
          training_set=None, overwrite: bool = False, source=None
          ) -> Dict[str, Dict[str, float]]:
    """Train ``model`` as ``cfg`` says; returns the final evaluation (dataset -> metrics).

    Args:
        resume: continue from ``OUTPUT_DIR/last_checkpoint`` (or the newest readable
            checkpoint, ``Checkpointer.read_latest``) when there is one (model, optimizer,
            schedule, scaler, EMA, iteration, RNG and data position), after comparing its
            config with ``cfg`` (``engine.resume_config``); else start from MODEL.WEIGHTS.
            A finished run resumes as finished (from ``model_final.pth``, which holds
            the weights only), or with a larger SOLVER.MAX_ITER trains on from the full
            state saved beside it (``_save_final``).
        overwrite: a fresh start (no ``resume``, or nothing to resume) may delete the
            checkpoints of an earlier run in OUTPUT_DIR; without it they are an error.
        load_weights: ``fn(model, path)`` loading MODEL.WEIGHTS (formats of
            ``fewshot_det.checkpoint``); None = ``fewshot_det.checkpoint.load_weights``.
        training_set: (records, metadata) to train on, e.g. a K-shot split the caller
            already built; None = ``data.build.training_records(cfg)``, read here.
        source: steps on something else than images, e.g. cached RoI features
            (``engine.roi_cache.CachedTrainingSource``): ``source.batches(start_iter)``
            gives the batches once the weights are loaded, ``source.module(batch)`` the
            losses (its parameters are ``model``'s), ``source.thing_classes`` the names.

    Raises:
        OutputDirInUse: another run trains in OUTPUT_DIR (``engine.run_lock``; the lock
            is held until this function returns or raises).
        ValueError: a fresh start over an earlier run's checkpoints without ``overwrite``.
    """
    with RunLock(cfg.OUTPUT_DIR) if is_main_process() else nullcontext():
        return _train(cfg, model, resume=resume, load_weights=load_weights,
                      training_set=training_set, overwrite=overwrite, source=source)


@dataclass
class _Run:
    """What the loop's steps share: the training objects and the run's bookkeeping."""

    model: torch.nn.Module  # the bare model: evaluated, checkpointed, averaged by ``ema``
    optimizer: torch.optim.Optimizer
    scheduler: LRMultiplier
    ema: Optional[ModelEMA]
    scaler: Optional[torch.amp.GradScaler]
    checkpointer: Checkpointer
    start_iter: int = 0
    resumed: bool = False  # from a checkpoint in OUTPUT_DIR (else a fresh start)
    best: Optional[float] = None  # the best TEST.BEST_METRIC so far (model_best.pth)
    meta: dict = field(default_factory=dict)  # ``extra`` of every checkpoint
    writer: Optional[MetricsWriter] = None  # metrics.jsonl; None on other ranks than 0


def _train(cfg, model, *, resume, load_weights, training_set, overwrite, source):
    run = _build_run(cfg, model)
    _start(cfg, run, resume=resume, load_weights=load_weights, overwrite=overwrite,
           training_set=training_set)
    train_model, data_iter, thing_classes = _training_data(cfg, run, training_set, source)
    # thing_classes lets Predictor name classes; config is what --resume compares with
    run.meta = {"thing_classes": list(thing_classes), "config": cfg.dump()}
    run.writer = MetricsWriter(cfg.OUTPUT_DIR) if is_main_process() else None
    progress = _progress(cfg, run.start_iter)
    train_model.train()
    watch, problem = LossWatch(cfg.SOLVER.DIVERGENCE_FACTOR), None
    t_end = time.perf_counter()
    for iteration in range(run.start_iter, cfg.SOLVER.MAX_ITER):
        batch = next(data_iter)
        t_data = time.perf_counter()
        stats = _guarded_step(cfg, run, train_model, batch, iteration)
        problem = _watch_loss(run.checkpointer, watch, stats["total_loss"], iteration)
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update(model)
        now = time.perf_counter()
        stats.update(lr=max(g["lr"] for g in run.optimizer.param_groups), time=now - t_end,
                     data_time=t_data - t_end)
        t_end = now
        if progress.update(iteration, stats) is not None and run.writer is not None:
            run.writer.write(iteration + 1, stats)
        _checkpoint_and_evaluate(cfg, run, done=iteration + 1)
    progress.close()
    return _finish(cfg, run, problem)


# ------------------------------------------------------------------ before the loop
def _build_run(cfg, model) -> _Run:
    """The optimizer, schedule, EMA, AMP scaler and checkpointer of a run (the
    checkpointer first clears the temp files of saves killed mid-write)."""
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    ema = ModelEMA(model, decay=cfg.SOLVER.EMA.DECAY, warmup=cfg.SOLVER.EMA.WARMUP) \
        if cfg.SOLVER.EMA.ENABLED else None
    scaler = _build_scaler(cfg, model_device(model))
    checkpointer = Checkpointer(
        cfg.OUTPUT_DIR, {"model": model, "optimizer": optimizer, "scheduler": scheduler,
                         "scaler": scaler, "ema": ema},
        max_to_keep=cfg.SOLVER.MAX_TO_KEEP, save_to_disk=is_main_process())
    if is_main_process():
        checkpointer.remove_stray_temp_files()
    return _Run(model, optimizer, scheduler, ema, scaler, checkpointer)


def _build_scaler(cfg, device):
    if cfg.SOLVER.AMP.ENABLED and device.type == "cuda" and cfg.SOLVER.AMP.DTYPE == "float16":
        return torch.amp.GradScaler("cuda")
    return None


def _start(cfg, run: _Run, *, resume: bool, load_weights, overwrite: bool,
           training_set) -> None:
    """Set ``run.start_iter`` and ``run.best``: resume, or load MODEL.WEIGHTS and (from
    iteration 0) warm the backbone up on crops; then write OUTPUT_DIR/config.yaml."""
    found = _find_resume_point(cfg, run.checkpointer) if resume else None
    if found is not None:
        _resume(cfg, run, *found)
    else:
        if resume:
            logger.info("no checkpoint in %s to resume from; starting fresh", cfg.OUTPUT_DIR)
        _fresh_start(cfg, run, load_weights, overwrite)
    if is_main_process():  # after the resume check: the values this run really uses
        atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())
    if run.start_iter == 0 and cfg.PRETRAIN.ITERS > 0:
        _crop_pretrain(cfg, run.model, run.ema, training_set)


def _find_resume_point(cfg, checkpointer: Checkpointer):
    """(path, checkpoint) that ``--resume`` continues from, or None (nothing to resume).

    ``model_final.pth`` holds a finished run's weights without optimizer state: it resumes
    the run as finished, but training on past it (a larger SOLVER.MAX_ITER) starts from
    the newest periodic checkpoint, the full state ``_save_final`` wrote beside it.

    Raises:
        ValueError: as ``Checkpointer.read_latest``; or training past a finished run that
            kept no periodic checkpoint.
    """
    found = checkpointer.read_latest()
    if found is None or checkpointer.is_resumable(found[1]) \
            or found[1]["iteration"] >= cfg.SOLVER.MAX_ITER:
        return found
    final, finished_at = found[0], int(found[1]["iteration"])
    earlier = checkpointer.read_latest(skip_final=True)
    if earlier is None:
        raise ValueError(
            f"--resume: {final} holds the weights of a run finished at iteration "
            f"{finished_at}, not its optimizer state, and no periodic checkpoint is left to "
            f"train on to SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}: fine-tune from it in "
            f"another OUTPUT_DIR with MODEL.WEIGHTS {final}")
    replayed = finished_at - int(earlier[1]["iteration"])
    # _save_final leaves the finished run's full state at its last iteration: nothing is
    # lost unless that file was removed
    logger.log(logging.WARNING if replayed else logging.INFO,
               "--resume: training on past the finished run's %s (iteration %d) to "
               "SOLVER.MAX_ITER %d, from its full state %s%s", os.path.basename(final),
               finished_at, cfg.SOLVER.MAX_ITER, earlier[0],
               f" ({replayed} iterations earlier: they are trained again)" if replayed else "")
    return earlier


def _resume(cfg, run: _Run, path: str, ckpt: dict) -> None:
    check_resume_config(saved_config_text(ckpt, cfg.OUTPUT_DIR), cfg, checkpoint=path)
    groups = config_hyperparameters(run.optimizer, run.scheduler)
    run.checkpointer.restore(ckpt, path)
    apply_hyperparameters(run.optimizer, run.scheduler, groups)  # the config's SOLVER wins
    run.start_iter, run.best = int(ckpt["iteration"]), ckpt["extra"].get("best")
    run.resumed = True


def _fresh_start(cfg, run: _Run, load_weights, overwrite: bool) -> None:
    """Refuse (or with ``overwrite`` delete) an earlier run's checkpoints; load
    MODEL.WEIGHTS into the model and the EMA."""
    if not overwrite:
        check_fresh_start(cfg.OUTPUT_DIR)  # every rank: they refuse together
    elif is_main_process():
        check_fresh_start(cfg.OUTPUT_DIR, overwrite=True)
    if not cfg.MODEL.WEIGHTS:
        return
    if load_weights is None:
        from ..checkpoint import load_weights
    load_weights(run.model, cfg.MODEL.WEIGHTS)
    if run.ema is not None:  # the average starts from the loaded weights
        run.ema.module.load_state_dict(run.model.state_dict())


def _crop_pretrain(cfg, model, ema, training_set) -> None:
    records = (training_set if training_set is not None else training_records(cfg))[0]
    pretrain_backbone_on_crops(cfg, model, records)
    if ema is not None:  # the average starts from the warmed-up weights
        ema.module.load_state_dict(model.state_dict())


def _training_data(cfg, run: _Run, training_set, source):
    """(module to train, batch iterator from ``run.start_iter``, class names): the model
    (in DDP when several processes train) on the images, or ``source``'s steps."""
    if source is not None:  # after the weights are loaded: it may compute features from them
        data_iter = source.batches(run.start_iter)  # sets source.module
        return source.module, data_iter, source.thing_classes
    train_model = wrap_ddp(run.model)
    loader, metadata = build_train_loader_from_config(cfg, start_iter=run.start_iter,
                                                      training_set=training_set)
    return train_model, iter(loader), metadata.thing_classes


def _progress(cfg, start_iter: int) -> Progress:
    """The progress bar and log line (rank 0 only); logs the iterations to run."""
    max_iter = cfg.SOLVER.MAX_ITER
    progress = Progress(start_iter, max_iter, enabled=is_main_process(),
                        period=cfg.SOLVER.LOG_PERIOD)
    logger.info("training from iteration %d to %d (seed %d)", start_iter, max_iter, cfg.SEED)
    return progress


# ------------------------------------------------------------------ in the loop
def _guarded_step(cfg, run: _Run, train_model, batch, iteration: int) -> Dict[str, float]:
    """``train_step``; at a non-finite loss, drop the staged checkpoint (the weights it
    holds produced that loss) and raise with the way to continue."""
    try:
        return train_step(train_model, batch, run.optimizer, cfg=cfg, iteration=iteration,
                          scaler=run.scaler)
    except FloatingPointError as e:
        run.checkpointer.discard("the next loss is non-finite")
        raise FloatingPointError(f"{e}; {run.checkpointer.divergence_advice()}") from None


def _watch_loss(checkpointer: Checkpointer, watch: LossWatch, loss: float,
                iteration: int) -> Optional[str]:
    """Judge ``loss`` (``engine.divergence``), settle the staged checkpoint by it; returns
    what is wrong with it (None: sane).

    Raises:
        FloatingPointError: the loss has been exploded for ``watch``'s whole window.
    """
    problem = watch.problem(loss)
    _settle_staged(checkpointer, problem, iteration, first=watch.streak == 1)
    if watch.diverged():
        raise FloatingPointError(
            f"training diverged: for {watch.streak} iterations up to {iteration}, "
            f"{problem}; {checkpointer.divergence_advice()}")
    return problem


def _settle_staged(checkpointer: Checkpointer, problem: Optional[str], iteration: int, *,
                   first: bool) -> None:
    """Write the checkpoint staged before ``iteration`` if its loss was sane, else drop it
    (the weights it holds produced that loss); warn at the first exploded loss of a run
    of them."""
    if problem is None:
        checkpointer.commit()
        return
    if first:
        logger.warning("iteration %d: %s: the weights are blowing up; no checkpoint is "
                       "written until the loss is sane again", iteration, problem)
    checkpointer.discard(problem, quiet=True)


def _checkpoint_and_evaluate(cfg, run: _Run, *, done: int) -> None:
    """After ``done`` iterations: stage the periodic checkpoint (written once the next
    loss is sane), evaluate every TEST.EVAL_PERIOD; neither at the end (``_finish``)."""
    if done >= cfg.SOLVER.MAX_ITER:
        return
    if done % cfg.SOLVER.CHECKPOINT_PERIOD == 0:
        run.checkpointer.stage(f"model_{done - 1:07d}", done, {"best": run.best, **run.meta})
    if cfg.TEST.EVAL_PERIOD and done % cfg.TEST.EVAL_PERIOD == 0:
        run.best = _periodic_eval(cfg, run, done)


def _periodic_eval(cfg, run: _Run, done: int) -> Optional[float]:
    """Evaluate, log, and save model_best.pth when TEST.BEST_METRIC improved on the first
    test dataset; returns the best value so far."""
    metrics = _evaluate_with_ema(cfg, run.model, run.ema)
    if run.writer is not None:
        run.writer.write(done, _flatten(metrics))
    first = metrics[cfg.DATASETS.TEST[0]]
    value = first.get(cfg.TEST.BEST_METRIC, -1)
    if run.best is None or value > run.best:
        run.checkpointer.save("model_best", done,
                              {"best": value, "metric": cfg.TEST.BEST_METRIC, **run.meta},
                              update_pointer=False)
        logger.info("new best %s = %.4f at iteration %d", cfg.TEST.BEST_METRIC, value, done)
        return value
    return run.best


def _evaluate_with_ema(cfg, model, ema: Optional[ModelEMA], *, plots: bool = False
                       ) -> Dict[str, Dict[str, float]]:
    """``evaluate_model`` of the model, and of the EMA under ``<dataset>@ema`` keys; each
    logged table names the weights it scored."""
    if ema is None:
        return evaluate_model(cfg, model, plots=plots, weights="the trained weights")
    metrics = evaluate_model(cfg, model, plots=plots,
                             weights="the raw weights (not averaged; model_final's \"model\")")
    metrics.update({f"{k}@ema": v for k, v in evaluate_model(
        cfg, ema.module, tag="inference_ema", plots=plots,
        weights=f"the EMA weights (SOLVER.EMA.DECAY {cfg.SOLVER.EMA.DECAY}; "
                f"model_final's \"ema\")").items()})
    return metrics


def _flatten(all_metrics: Dict[str, Dict]) -> Dict[str, float]:
    return {f"{name}/{k}": v for name, m in all_metrics.items() for k, v in m.items()
            if isinstance(v, (int, float))}


# ------------------------------------------------------------------ after the loop
def _finish(cfg, run: _Run, problem: Optional[str]) -> Dict[str, Dict[str, float]]:
    """Write model_final.pth (the weights, class names and config: no optimizer state),
    run the final evaluation, close metrics.jsonl; returns the evaluation.

    Raises:
        FloatingPointError: the last loss was exploded (``problem``): the weights are
            blown up, so no model_final is written.
    """
    max_iter = cfg.SOLVER.MAX_ITER
    if problem is not None:
        raise FloatingPointError(
            f"training diverged: at the last iteration {max_iter - 1}, {problem}; "
            f"model_final is not written; {run.checkpointer.divergence_advice()}")
    _save_final(run, max_iter)
    final = _evaluate_with_ema(cfg, run.model, run.ema, plots=True) if cfg.DATASETS.TEST else {}
    if run.writer is not None:
        if final:
            run.writer.write(max_iter, _flatten(final))
        run.writer.close()
    return final


def _save_final(run: _Run, max_iter: int) -> None:
    """Write model_final.pth, what a user ships: the weights (and their EMA), class names
    and config, no optimizer state; beside it, the full state as the last periodic
    checkpoint, which ``--resume`` with a larger SOLVER.MAX_ITER trains on from. A resumed
    run that had nothing left to train writes neither (its files already hold it)."""
    extra = {"best": run.best, **run.meta}
    if run.start_iter < max_iter:
        run.checkpointer.save(f"model_{max_iter - 1:07d}", max_iter, extra, periodic=True,
                              update_pointer=False)
    elif run.resumed:
        return
    run.checkpointer.save_weights(FINAL, max_iter, extra)
