"""The training loop, readable top to bottom: one function, a few helpers.

    build optimizer, schedule, EMA, AMP scaler -> resume or load MODEL.WEIGHTS
    -> for each iteration: forward, all-reduced NaN guard, backward, clip, step, EMA
       -> log (metrics.jsonl, TensorBoard, progress bar) -> checkpoint -> evaluate
    -> model_final.pth and the final evaluation under OUTPUT_DIR/inference/
"""
from __future__ import annotations

import logging
import os
import re
import time
from contextlib import nullcontext
from typing import Dict, List, Optional

import torch

from ..data.build import (build_test_loader_from_config, build_train_loader_from_config,
                          training_records)
from ..utils.files import atomic_write_text
from .checkpoint import (Checkpointer, check_fresh_start, rng_state, set_rng_state,
                         unwrap)
from .comm import all_gather_objects, get_world_size, is_main_process, reduce_mean
from .crop_pretrain import pretrain_backbone_on_crops
from .divergence import LossWatch
from .ema import ModelEMA
from .events import MetricsWriter, Progress
from .inference import evaluate_and_save, inference_on_dataset
from .optim import (apply_hyperparameters, build_lr_scheduler, build_optimizer,
                    config_hyperparameters)
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


def evaluate_model(cfg, model, *, tag: str = "inference") -> Dict[str, Dict[str, float]]:
    """Evaluate on each of ``DATASETS.TEST``; writes ``OUTPUT_DIR/<tag>/<dataset>/``."""
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
                                              score_thresh=cfg.TEST.PR_SCORE_THRESH)
    set_rng_state(state)
    return all_metrics


def _build_scaler(cfg, device):
    if cfg.SOLVER.AMP.ENABLED and device.type == "cuda" and cfg.SOLVER.AMP.DTYPE == "float16":
        return torch.amp.GradScaler("cuda")
    return None


def _wrap_ddp(model):
    if get_world_size() == 1:
        return model
    device = model_device(model)
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True)


def train(cfg, model: torch.nn.Module, *, resume: bool = False, load_weights=None,
          training_set=None, overwrite: bool = False, source=None
          ) -> Dict[str, Dict[str, float]]:
    """Train ``model`` as ``cfg`` says; returns the final evaluation (dataset -> metrics).

    Args:
        resume: continue from ``OUTPUT_DIR/last_checkpoint`` (or the newest readable
            checkpoint, ``Checkpointer.read_latest``) when there is one (model, optimizer,
            schedule, scaler, EMA, iteration, RNG and data position), after comparing its
            config with ``cfg`` (``engine.resume_config``); else start from MODEL.WEIGHTS.
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


def _train(cfg, model, *, resume, load_weights, training_set, overwrite, source):
    device = model_device(model)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    ema = ModelEMA(model, decay=cfg.SOLVER.EMA.DECAY, warmup=cfg.SOLVER.EMA.WARMUP) \
        if cfg.SOLVER.EMA.ENABLED else None
    scaler = _build_scaler(cfg, device)
    checkpointer = Checkpointer(
        cfg.OUTPUT_DIR, {"model": model, "optimizer": optimizer, "scheduler": scheduler,
                         "scaler": scaler, "ema": ema},
        max_to_keep=cfg.SOLVER.MAX_TO_KEEP, save_to_disk=is_main_process())
    if is_main_process():
        checkpointer.remove_stray_temp_files()
    start_iter, best = _resume_or_load(cfg, model, checkpointer, resume, load_weights, ema,
                                       overwrite)
    if is_main_process():  # after the resume check: the values this run really uses
        atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())
    if start_iter == 0 and cfg.PRETRAIN.ITERS > 0:
        _crop_pretrain(cfg, model, ema, training_set)
    max_iter = cfg.SOLVER.MAX_ITER
    if source is None:
        train_model = _wrap_ddp(model)
        loader, metadata = build_train_loader_from_config(cfg, start_iter=start_iter,
                                                          training_set=training_set)
        data_iter, thing_classes = iter(loader), metadata.thing_classes
    else:  # after the weights are loaded: the source may compute features from them
        data_iter, thing_classes = source.batches(start_iter), source.thing_classes
        train_model = source.module
    # thing_classes lets Predictor name classes; config is what --resume compares with
    meta = {"thing_classes": list(thing_classes), "config": cfg.dump()}
    writer = MetricsWriter(cfg.OUTPUT_DIR) if is_main_process() else None
    progress = Progress(start_iter, max_iter, enabled=is_main_process(),
                        period=cfg.SOLVER.LOG_PERIOD)
    logger.info("training from iteration %d to %d (seed %d)", start_iter, max_iter, cfg.SEED)
    train_model.train()
    watch, problem = LossWatch(cfg.SOLVER.DIVERGENCE_FACTOR), None
    t_end = time.perf_counter()
    for iteration in range(start_iter, max_iter):
        batch = next(data_iter)
        t_data = time.perf_counter()
        try:
            stats = train_step(train_model, batch, optimizer, cfg=cfg, iteration=iteration,
                               scaler=scaler)
        except FloatingPointError as e:
            checkpointer.discard("the next loss is non-finite")
            raise FloatingPointError(f"{e}; {checkpointer.divergence_advice()}") from None
        problem = watch.problem(stats["total_loss"])
        _settle_staged(checkpointer, problem, iteration, first=watch.streak == 1)
        if watch.diverged():
            raise FloatingPointError(
                f"training diverged: for {watch.streak} iterations up to {iteration}, "
                f"{problem}; {checkpointer.divergence_advice()}")
        scheduler.step()
        if ema is not None:
            ema.update(model)
        now = time.perf_counter()
        stats.update(lr=max(g["lr"] for g in optimizer.param_groups), time=now - t_end,
                     data_time=t_data - t_end)
        t_end = now
        if progress.update(iteration, stats) is not None and writer is not None:
            writer.write(iteration + 1, stats)
        done = iteration + 1
        if done % cfg.SOLVER.CHECKPOINT_PERIOD == 0 and done < max_iter:
            checkpointer.stage(f"model_{iteration:07d}", done, {"best": best, **meta})
        if cfg.TEST.EVAL_PERIOD and done % cfg.TEST.EVAL_PERIOD == 0 and done < max_iter:
            best = _periodic_eval(cfg, model, ema, checkpointer, writer, done, best, meta)
    progress.close()
    if start_iter < max_iter and problem is not None:  # no model_final from blown-up weights
        raise FloatingPointError(
            f"training diverged: at the last iteration {max_iter - 1}, {problem}; "
            f"model_final is not written; {checkpointer.divergence_advice()}")
    checkpointer.save("model_final", max_iter, {"best": best, **meta})
    final = evaluate_model(cfg, model) if cfg.DATASETS.TEST else {}
    if ema is not None and cfg.DATASETS.TEST:
        final.update({f"{k}@ema": v for k, v in
                      evaluate_model(cfg, ema.module, tag="inference_ema").items()})
    if writer is not None:
        if final:
            writer.write(max_iter, _flatten(final))
        writer.close()
    return final


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


def _flatten(all_metrics: Dict[str, Dict]) -> Dict[str, float]:
    return {f"{name}/{k}": v for name, m in all_metrics.items() for k, v in m.items()
            if isinstance(v, (int, float))}


def _periodic_eval(cfg, model, ema, checkpointer, writer, done: int,
                   best: Optional[float], meta: dict) -> Optional[float]:
    metrics = evaluate_model(cfg, model)
    if ema is not None:
        metrics.update({f"{k}@ema": v for k, v in
                        evaluate_model(cfg, ema.module, tag="inference_ema").items()})
    if writer is not None:
        writer.write(done, _flatten(metrics))
    first = metrics[cfg.DATASETS.TEST[0]]
    value = first.get(cfg.TEST.BEST_METRIC, -1)
    if best is None or value > best:
        best = value
        checkpointer.save("model_best", done,
                          {"best": best, "metric": cfg.TEST.BEST_METRIC, **meta},
                          update_pointer=False)
        logger.info("new best %s = %.4f at iteration %d", cfg.TEST.BEST_METRIC, value, done)
    return best


def _crop_pretrain(cfg, model, ema, training_set) -> None:
    records = (training_set if training_set is not None else training_records(cfg))[0]
    pretrain_backbone_on_crops(cfg, model, records)
    if ema is not None:  # the average starts from the warmed-up weights
        ema.module.load_state_dict(model.state_dict())


def _resume_or_load(cfg, model, checkpointer, resume: bool, load_weights, ema,
                    overwrite: bool = False):
    found = checkpointer.read_latest() if resume else None
    if found is not None:
        last, ckpt = found
        check_resume_config(saved_config_text(ckpt, cfg.OUTPUT_DIR), cfg, checkpoint=last)
        optimizer, scheduler = checkpointer.objects["optimizer"], checkpointer.objects["scheduler"]
        groups = config_hyperparameters(optimizer, scheduler)
        checkpointer.restore(ckpt, last)
        apply_hyperparameters(optimizer, scheduler, groups)  # the config's SOLVER values win
        return int(ckpt["iteration"]), ckpt["extra"].get("best")
    if resume:
        logger.info("no checkpoint in %s to resume from; starting fresh", cfg.OUTPUT_DIR)
    if not overwrite:
        check_fresh_start(cfg.OUTPUT_DIR)  # every rank: they refuse together
    elif is_main_process():
        check_fresh_start(cfg.OUTPUT_DIR, overwrite=True)
    if cfg.MODEL.WEIGHTS:
        if load_weights is None:
            from ..checkpoint import load_weights
        load_weights(model, cfg.MODEL.WEIGHTS)
        if ema is not None:  # the average starts from the loaded weights
            ema.module.load_state_dict(model.state_dict())
    return 0, None
