"""Training checkpoints: atomic writes, a ``last_checkpoint`` pointer, and full resume.

A checkpoint holds only tensors and plain Python data, so it loads with
``torch.load(weights_only=True)``:
    model, optimizer, scheduler, scaler, ema   state dicts (those that exist)
    iteration   number of iterations completed (training resumes at this index)
    rng         {"torch": ByteTensor, "cuda": [ByteTensor ...]}
    extra       anything else the caller stores (metadata, best metric ...)

The file a finished run ships (``save_weights``, ``model_final.pth``) keeps only the
``WEIGHTS`` states, iteration and extra: no optimizer state (twice the model's size with
Adam), scheduler, scaler or RNG. ``--resume`` over it resumes the run as finished; the
training loop keeps the full state beside it as the last periodic checkpoint, which
``--resume`` with a larger SOLVER.MAX_ITER trains on from.

A file is written through ``fewshot_det.utils.files.atomic_write_bytes`` (a unique temp
file, fsync, rename), so a crash mid-save leaves the previous file and the pointer untouched.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..utils.files import atomic_write_bytes, atomic_write_text

__all__ = ["FINAL", "POINTER", "WEIGHTS", "Checkpointer", "atomic_write_bytes",
           "check_fresh_start", "checkpoint_files", "save_atomic", "rng_state",
           "set_rng_state", "unwrap"]

logger = logging.getLogger(__name__)
POINTER = "last_checkpoint"
FINAL = "model_final"
# The states a finished run's file keeps: the weights and their running average.
WEIGHTS = ("model", "ema")
PERIODIC = re.compile(r"model_(\d{7,})\.pth")
# atomic_write_bytes's temp name (mkstemp: 8 characters of [a-z0-9_]) for our own files
STRAY_TEMP = re.compile(r"\.(model_\w+\.pth|last_checkpoint|config\.yaml)\.[a-z0-9_]{8}\.tmp")


def save_atomic(obj: Dict[str, Any], path: str) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f))


def non_finite_tensors(obj: Any, prefix: str = "") -> Tuple[List[str], int]:
    """(names of the floating tensors in a nested state holding NaN/inf, count of all
    floating tensors); names are dotted paths such as ``model.backbone.stem.weight``."""
    if torch.is_tensor(obj):
        if not obj.is_floating_point():
            return [], 0
        return ([] if torch.isfinite(obj).all() else [prefix]), 1
    items = obj.items() if isinstance(obj, dict) else \
        enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    bad, total = [], 0
    for key, value in items:
        b, t = non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
        bad += b
        total += t
    return bad, total


def _copy_tensors(obj: Any) -> Any:
    """``obj`` with every tensor cloned: state dicts share storage with the live model and
    optimizer, which the next steps change in place."""
    if torch.is_tensor(obj):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_tensors(v) for v in obj)
    return obj


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel, or the model itself."""
    return model.module if hasattr(model, "module") else model


def checkpoint_files(folder: str) -> List[str]:
    """Paths of the training checkpoints in ``folder``, newest first: ``model_final.pth``,
    then ``model_XXXXXXX.pth`` by iteration (``model_best.pth`` is a copy, not a step)."""
    if not os.path.isdir(folder):
        return []
    names = os.listdir(folder)
    periodic = sorted((f for f in names if PERIODIC.fullmatch(f)),
                      key=lambda f: int(PERIODIC.fullmatch(f).group(1)), reverse=True)
    final = [f"{FINAL}.pth"] if f"{FINAL}.pth" in names else []
    return [os.path.join(folder, f) for f in final + periodic]


# What a fresh start with --overwrite deletes besides the checkpoints: the pointer, the best
# weights and the logs of the run it replaces (a new run's metrics.jsonl would otherwise
# continue the old one's lines).
RUN_FILES = (POINTER, "model_best.pth", "metrics.jsonl")


def check_fresh_start(folder: str, *, overwrite: bool = False, logs: bool = False
                      ) -> List[str]:
    """Make ``folder`` ready for a run starting at iteration 0.

    A fresh start over another run's checkpoints would replace them one by one (and leave
    its later ones behind to confuse a later ``--resume``), so it needs ``overwrite``,
    which deletes them, the pointer, ``model_best.pth`` and ``metrics.jsonl`` first (and
    ``log.txt`` with ``logs``: only before this process logs into it).

    Returns:
        the names of the files deleted.
    Raises:
        ValueError: ``folder`` holds checkpoints and ``overwrite`` is False.
    """
    found = checkpoint_files(folder)
    if not found:
        return []
    names = [os.path.basename(f) for f in found]
    if not overwrite:
        raise ValueError(
            f"{folder} holds the checkpoints of a run ({', '.join(names[:3])}"
            f"{' ...' if len(names) > 3 else ''}): continue it with --resume, start it over "
            f"with --overwrite (deletes them), or set another OUTPUT_DIR")
    extra = RUN_FILES + (("log.txt",) if logs else ())
    deleted = found + [p for p in (os.path.join(folder, f) for f in extra) if os.path.exists(p)]
    for path in deleted:
        os.remove(path)
    deleted = [os.path.basename(p) for p in deleted]
    logger.warning("--overwrite: deleted the previous run's files in %s: %s", folder,
                   ", ".join(deleted))
    return deleted


class Checkpointer:
    """Saves and restores the whole training state in ``output_dir``.

    Args:
        output_dir: folder of ``model_XXXXXXX.pth``, ``model_final.pth``, the pointer.
        objects: name -> object with ``state_dict()`` / ``load_state_dict()`` (model,
            optimizer, scheduler, scaler, ema); ``None`` values are skipped.
        max_to_keep: periodic checkpoints kept (older ones deleted); 0 keeps all.
        save_to_disk: False on non-main ranks (they never write).
    """

    def __init__(self, output_dir: str, objects: Dict[str, Any], *, max_to_keep: int = 3,
                 save_to_disk: bool = True):
        self.output_dir = output_dir
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.max_to_keep = max_to_keep
        self.save_to_disk = save_to_disk
        self._periodic: List[str] = []
        self.pending: Optional[Tuple[str, Dict[str, Any]]] = None  # see stage()

    def _state(self, iteration: int, extra: Optional[dict], *,
               training_state: bool = True) -> Dict[str, Any]:
        state = {k: (unwrap(v) if k == "model" else v).state_dict()
                 for k, v in self.objects.items() if k in WEIGHTS or training_state}
        state["iteration"] = iteration
        if training_state:
            state["rng"] = rng_state()
        state["extra"] = extra or {}
        return state

    def save(self, name: str, iteration: int, extra: Optional[dict] = None, *,
             periodic: bool = False, update_pointer: bool = True) -> Optional[str]:
        """Write ``<output_dir>/<name>.pth``; returns its path (None on non-main ranks).

        Raises:
            FloatingPointError: the weights or optimizer state hold NaN/inf (a diverged
                run). Nothing is written and ``last_checkpoint`` keeps naming the last
                good file, so ``--resume`` continues from before the divergence.
        """
        state = self._state(iteration, extra)
        self._check_finite(state, iteration)  # every rank: DDP replicas diverge together
        return self._write(name, state, periodic=periodic, update_pointer=update_pointer)

    def save_weights(self, name: str, iteration: int, extra: Optional[dict] = None
                     ) -> Optional[str]:
        """Write ``<output_dir>/<name>.pth`` holding the ``WEIGHTS`` states, ``iteration``
        and ``extra`` only, and point ``last_checkpoint`` at it (a finished run's file);
        returns its path (None on non-main ranks).

        Raises:
            FloatingPointError: as ``save``.
        """
        state = self._state(iteration, extra, training_state=False)
        self._check_finite(state, iteration)
        return self._write(name, state, periodic=False, update_pointer=True)

    def is_resumable(self, ckpt: Dict[str, Any]) -> bool:
        """Whether ``ckpt`` holds every object's state (else it is a ``save_weights`` file)."""
        return all(k in ckpt for k in self.objects)

    def stage(self, name: str, iteration: int, extra: Optional[dict] = None) -> None:
        """Take a copy of the periodic checkpoint ``name`` now and write it at ``commit``.

        The training loop commits it once the next iteration's loss is sane
        (``engine.divergence``), so finite but blown-up weights never reach the disk.

        Raises:
            FloatingPointError: as ``save``.
        """
        state = self._state(iteration, extra)
        self._check_finite(state, iteration)
        self.pending = (name, _copy_tensors(state))

    def commit(self) -> Optional[str]:
        """Write the staged checkpoint, if any; returns its path (as ``save``)."""
        if self.pending is None:
            return None
        (name, state), self.pending = self.pending, None
        return self._write(name, state, periodic=True, update_pointer=True)

    def discard(self, reason: str, *, quiet: bool = False) -> None:
        """Drop the staged checkpoint unwritten, logging ``reason`` unless ``quiet``."""
        if self.pending is not None and not quiet:
            last = self.last_checkpoint()
            logger.warning("checkpoint %s is not written (%s); %s", self.pending[0], reason,
                           f"last_checkpoint still names {last}" if last else
                           "no checkpoint has been written yet")
        self.pending = None

    def _write(self, name: str, state: Dict[str, Any], *, periodic: bool,
               update_pointer: bool) -> Optional[str]:
        if not self.save_to_disk:
            return None
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, f"{name}.pth")
        save_atomic(state, path)
        if update_pointer:
            atomic_write_text(os.path.join(self.output_dir, POINTER), os.path.basename(path))
        if periodic:
            self._periodic.append(path)
            self._prune()
        logger.info("saved checkpoint %s (iteration %d)", path, state["iteration"])
        return path

    def divergence_advice(self) -> str:
        """How to continue a diverged run, naming the checkpoint ``--resume`` would use."""
        last = self.last_checkpoint()
        if last is None:
            return ("no checkpoint was written before: start again with a lower "
                    "SOLVER.BASE_LR or SOLVER.CLIP_GRADIENTS.ENABLED True")
        return (f"the last good checkpoint {last} is kept and last_checkpoint names it: "
                f"continue from it with --resume and a lower SOLVER.BASE_LR or "
                f"SOLVER.CLIP_GRADIENTS.ENABLED True (if that diverges too, start over with "
                f"--overwrite and a lower SOLVER.BASE_LR)")

    def _check_finite(self, state: Dict[str, Any], iteration: int) -> None:
        bad, total = non_finite_tensors({k: state[k] for k in self.objects if k in state})
        if not bad:
            return
        advice = self.divergence_advice()
        raise FloatingPointError(
            f"training diverged: {len(bad)} of {total} tensors are NaN/inf after iteration "
            f"{iteration} (e.g. {', '.join(bad[:3])}), so no checkpoint is written; {advice}")

    def _prune(self) -> None:
        if self.max_to_keep <= 0:
            return
        while len(self._periodic) > self.max_to_keep:
            old = self._periodic.pop(0)
            if os.path.exists(old):
                os.remove(old)

    def last_checkpoint(self) -> Optional[str]:
        """The checkpoint to resume from: the pointer's file; when the pointer is missing or
        names a missing file, the newest ``checkpoint_files`` (with a warning); None when
        the folder holds no checkpoint."""
        pointer = os.path.join(self.output_dir, POINTER)
        named = None
        if os.path.isfile(pointer):
            with open(pointer) as f:
                named = os.path.join(self.output_dir, f.read().strip())
            if os.path.isfile(named):
                return named
        files = checkpoint_files(self.output_dir)
        if named is not None or files:
            what = f"{pointer} names {named}, which does not exist" if named else \
                f"{pointer} is missing"
            logger.warning("%s; %s", what, f"resuming from the newest checkpoint {files[0]}"
                           if files else "no checkpoint to resume from")
        return files[0] if files else None

    def read_latest(self, *, skip_final: bool = False
                    ) -> Optional[Tuple[str, Dict[str, Any]]]:
        """(path, checkpoint) of the newest readable checkpoint (``last_checkpoint`` first,
        then ``checkpoint_files``); an unreadable (truncated) file is skipped with a warning.
        A finished run's ``model_final.pth`` may hold the weights only (``is_resumable``
        tells).

        Args:
            skip_final: leave ``model_final.pth`` out (to train on past a finished run from
                its newest periodic checkpoint).
        Returns:
            None when the folder holds no checkpoint (besides ``model_final.pth`` with
            ``skip_final``).
        Raises:
            ValueError: checkpoints exist but none is readable (training must not start
                again from zero over them).
        """
        first = self.last_checkpoint()
        if first is None:
            return None
        candidates = [first] + [p for p in checkpoint_files(self.output_dir) if p != first]
        if skip_final:
            candidates = [p for p in candidates if os.path.basename(p) != f"{FINAL}.pth"]
            if not candidates:
                return None
        for path in candidates:
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # truncated zip, bad pickle, I/O error
                logger.warning("checkpoint %s is unreadable (%s: %s); trying the next newest",
                               path, type(e).__name__, str(e).strip().splitlines()[0][:200]
                               if str(e).strip() else "")
                continue
            final = os.path.basename(path) == f"{FINAL}.pth"
            return path, self._check_objects(ckpt, path, weights_only_ok=final)
        raise ValueError(f"--resume: none of the {len(candidates)} checkpoints in "
                         f"{self.output_dir} is readable; move them away to start again")

    def remove_stray_temp_files(self) -> int:
        """Delete the temp files of saves killed mid-write (``.<name>.XXXXXXXX.tmp`` of
        ``atomic_write_bytes``, for checkpoints, the pointer and config.yaml) in the folder;
        returns the bytes removed. Call it only while no other process writes there."""
        if not os.path.isdir(self.output_dir):
            return 0
        removed, count = 0, 0
        for name in os.listdir(self.output_dir):
            if not STRAY_TEMP.fullmatch(name):
                continue
            path = os.path.join(self.output_dir, name)
            try:
                size = os.path.getsize(path)
                os.remove(path)
            except OSError:
                continue
            removed, count = removed + size, count + 1
        if count:
            logger.info("removed %d temp files of interrupted saves (%d bytes) from %s",
                        count, removed, self.output_dir)
        return removed

    def read(self, path: str) -> Dict[str, Any]:
        """The checkpoint at ``path`` (on the CPU), checked to hold every object's state.

        Raises:
            ValueError: a state is missing (a weights-only file, not a training checkpoint).
        """
        return self._check_objects(torch.load(path, map_location="cpu", weights_only=True),
                                   path)

    def _check_objects(self, ckpt: Dict[str, Any], path: str, *,
                       weights_only_ok: bool = False) -> Dict[str, Any]:
        needed = [k for k in self.objects if k in WEIGHTS or not weights_only_ok]
        missing = [k for k in needed if k not in ckpt]
        if missing:
            raise ValueError(f"checkpoint {path} lacks {missing}: not a resumable training "
                             "checkpoint (use MODEL.WEIGHTS to start from its weights)")
        return ckpt

    def restore(self, ckpt: Dict[str, Any], path: str) -> None:
        """Load every object's state and the RNG state from ``ckpt`` (read from ``path``);
        of a ``save_weights`` file (``read_latest`` returns one), the ``WEIGHTS`` states.

        Raises:
            ValueError: a state does not fit its object (another architecture or class
                count), naming the checkpoint and the object.
        """
        finished = not self.is_resumable(ckpt)
        for k, obj in self.objects.items():
            if finished and k not in WEIGHTS:
                continue  # a finished run's file: no optimizer state, nothing to continue
            try:
                (unwrap(obj) if k == "model" else obj).load_state_dict(ckpt[k])
            except (RuntimeError, ValueError, KeyError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                raise ValueError(f"--resume: the {k} state in {path} does not fit this run "
                                 f"({first}); the checkpoint was written with another MODEL "
                                 f"or SOLVER config: use another OUTPUT_DIR or the old "
                                 f"values") from e
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
        self._periodic = sorted(
            os.path.join(self.output_dir, f) for f in os.listdir(self.output_dir)
            if f.startswith("model_") and f[6:-4].isdigit() and f.endswith(".pth"))
        logger.info("resumed from %s at iteration %d", path, ckpt["iteration"])

    def resume(self, path: str) -> Dict[str, Any]:
        """Restore every object, the RNG state; return the checkpoint (iteration, extra)."""
        ckpt = self.read(path)
        self.restore(ckpt, path)
        return ckpt
