"""TFA fine-tuning from cached RoI features.

When only the box predictor trains (TFA: ``FEWSHOT.FINETUNE.TRAINABLE`` names only
``roi_heads.box_predictor.``), the backbone, the RPN and the box head are fixed functions
of the image, so everything up to the predictor's input is computed once. When the box
head's last layer(s) train too (``roi_heads.box_head.fc2.``, TFA's "fc" variant), the
cache holds the output of the frozen layers before them (never the pooled maps: a
C x S x S vector per RoI would not fit in memory), and each step runs the trainable
layers and the predictor:

    per K-shot image and variant (each INPUT.MIN_SIZE_TRAIN scale, and its mirror image
    when INPUT.RANDOM_FLIP > 0), in eval mode, without gradients:
        backbone -> RPN proposals (training top-k) + the GT boxes
        -> labels and regression targets (the box head's matcher)
        -> a pool of POOL x BATCH_SIZE_PER_IMAGE sampled RoIs -> box-head features
           (of its frozen layers)
    each iteration: SOLVER.IMS_PER_BATCH variants drawn, BATCH_SIZE_PER_IMAGE RoIs drawn
        from each one's pool (POSITIVE_FRACTION foreground at most)
        -> (the box head's trainable layers) -> box predictor -> Fast R-CNN losses -> step

A step then costs one small matrix product instead of a forward pass of the whole network.
What differs from fine-tuning on the images: normalisation layers outside the frozen
ResNet (a BN-FPN) use their running statistics rather than each batch's, and a variant's
RoIs come from one fixed pool rather than a new sample every time it is drawn.

Shape glossary: V variants, R cached RoIs (all pools, concatenated), D box-head feature
size, K classes.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..data.mapper import DatasetMapper
from ..data.transforms import RandomHorizontalFlip, ResizeShortestEdge
from ..modeling.losses import fast_rcnn_losses
from ..modeling.preprocess import prepare_targets
from ..modeling.roi_heads.box_head import FastRCNNFCHead
from ..modeling.sampling import sampled_indices
from .checkpoint import unwrap

logger = logging.getLogger(__name__)

# RoIs cached per variant, in units of MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE: each draw of
# a variant samples from 4x as many RoIs as it uses (fresh samples, bounded memory).
POOL = 4
PREDICTOR = "roi_heads.box_predictor."


def cached_head_layers(model: nn.Module) -> Optional[int]:
    """How many box-head layers the cache runs ahead: all of them when only the box
    predictor trains, else the frozen ones before the first trainable layer (at least one);
    None when anything else trains (or nothing does): the cache does not apply."""
    m = unwrap(model)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    head = getattr(getattr(m, "roi_heads", None), "box_head", None)
    layers = [n for n, _ in head.named_children()] if isinstance(head, FastRCNNFCHead) else []
    first = len(layers)
    for name in names:
        if name.startswith(PREDICTOR):
            continue
        hit = [i for i, layer in enumerate(layers)
               if name.startswith(f"roi_heads.box_head.{layer}.")]
        if not hit:
            return None
        first = min(first, hit[0])
    return first if names and first >= 1 else None


@dataclass
class RoICache:
    """Box-head features of sampled RoIs, per variant of each K-shot image.

    Attributes:
        features: float [R, D]; labels: int64 [R] in 0..K (0 = background);
        deltas: float [R, 4] regression targets (zero for background);
        offsets: variant v's RoIs are rows offsets[v]:offsets[v + 1];
        image_of: per variant, the index of its image in the K-shot records;
        image_ids: per image, its record's image_id;
        head_layers: the box-head layers ``features`` went through (the frozen ones).
    """

    features: Tensor
    labels: Tensor
    deltas: Tensor
    offsets: List[int]
    image_of: List[int]
    image_ids: List[object]
    head_layers: int

    @property
    def num_variants(self) -> int:
        return len(self.image_of)


def variants(cfg) -> List[Tuple[int, bool]]:
    """(short side, mirrored) of every cached variant of an image."""
    flips = [False, True] if cfg.INPUT.RANDOM_FLIP > 0 else [False]
    return [(int(s), f) for s in cfg.INPUT.MIN_SIZE_TRAIN for f in flips]


@torch.no_grad()
def build_roi_cache(cfg, model: nn.Module, records: Sequence[dict]) -> RoICache:
    """Compute the cache of ``records`` (the K-shot split) with ``model``'s current weights."""
    model = unwrap(model)
    layers = cached_head_layers(model)
    layers = model.roi_heads.box_head.num_layers if layers is None else layers
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    # The pools are sampled from a forked RNG seeded by SEED: the same pools whether the run
    # starts or resumes, and the training run's random stream is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.SEED)
        parts = [_image_rois(cfg, model, record, layers)
                 for record in _logged(records, cfg, start)]
    model.train(was_training)
    rois = [v for per_image in parts for v in per_image]
    offsets = np.cumsum([0] + [len(v[1]) for v in rois]).tolist()
    cache = RoICache(torch.cat([v[0] for v in rois]), torch.cat([v[1] for v in rois]),
                     torch.cat([v[2] for v in rois]), offsets,
                     [n for n, per_image in enumerate(parts) for _ in per_image],
                     [r["image_id"] for r in records], layers)
    logger.info("RoI cache: %d RoIs of %d variants (%.0f MB, after %d box-head layer(s)) "
                "in %.1f s", len(cache.labels), cache.num_variants,
                cache.features.numel() * 4 / 2 ** 20, layers, time.perf_counter() - start)
    return cache


def _logged(records: Sequence[dict], cfg, start: float):
    """``records``, logging progress and the ETA every 10 images."""
    for n, record in enumerate(records):
        yield record
        if (n + 1) % 10 == 0 or n + 1 == len(records):
            elapsed = time.perf_counter() - start
            logger.info("RoI cache: %d/%d images (%d variants each), %.0f s, eta %.0f s",
                        n + 1, len(records), len(variants(cfg)), elapsed,
                        elapsed / (n + 1) * (len(records) - n - 1))


def _image_rois(cfg, model, record: dict, layers: int) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """(features, labels, deltas) of each variant of one image."""
    i = cfg.INPUT
    out = []
    for short, flip in variants(cfg):
        mapper = DatasetMapper(
            transforms=[ResizeShortestEdge([short], i.MAX_SIZE_TRAIN, backend=i.RESIZE_BACKEND),
                        RandomHorizontalFlip(1.0 if flip else 0.0)],
            image_format=i.FORMAT, use_difficult=cfg.DATASETS.TRAIN_USE_DIFFICULT,
            keep_annotations=True)
        item = mapper(record, np.random.default_rng(0))  # these transforms draw nothing
        out.append(variant_rois(model, item, POOL * cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
                                layers))
    return out


def variant_rois(model, item: dict, num_samples: int, layers: Optional[int] = None
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """(box-head features float [R, D] after its first ``layers`` layers (default all),
    labels int64 [R], deltas float [R, 4]) of ``num_samples`` RoIs of one image variant,
    sampled as the box head's training samples them from the RPN's training top-k (in eval
    mode: the frozen normalisation's statistics)."""
    images = model.preprocess([item])
    targets = prepare_targets([item], model.num_classes, model.device)
    features = model.features(images)
    proposals, _ = model.proposals(images, features, targets, training_topk=True)
    rois, labels, deltas = model.sample_rois(proposals, targets, num_samples)
    head = model.box_features(features, rois, layers)
    return head.float().cpu(), labels.cpu(), deltas.float().cpu()


class CachedPredictorTraining(nn.Module):
    """``module(batch) -> {"loss_cls", "loss_box_reg"}`` on cached RoIs, where ``batch`` is
    a list of {"variant": v, "image_id": ...}; the parameters are the detector's own."""

    def __init__(self, detector: nn.Module, cache: RoICache, *, batch_size_per_image: int,
                 positive_fraction: float, smooth_l1_beta: float):
        super().__init__()
        self.detector = detector  # not "module": unwrap() would take it for a DDP wrapper
        self.cache = cache
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.smooth_l1_beta = smooth_l1_beta

    def forward(self, batch: List[dict]):
        c = self.cache
        picked = []
        for item in batch:
            lo, hi = c.offsets[item["variant"]], c.offsets[item["variant"] + 1]
            idx, _ = sampled_indices(c.labels[lo:hi], self.batch_size_per_image,
                                     self.positive_fraction)
            picked.append(idx + lo)
        idx = torch.cat(picked)
        device = next(self.detector.parameters()).device
        x = c.features[idx].to(device)
        if c.head_layers < self.detector.roi_heads.box_head.num_layers:
            x = self.detector.box_head_from(x, c.head_layers)
        logits, deltas = self.detector.predict_boxes(x)
        return fast_rcnn_losses(logits.float(), deltas.float(), c.labels[idx].to(device),
                                c.deltas[idx].to(device), smooth_l1_beta=self.smooth_l1_beta)


def cached_batches(cache: RoICache, *, batch_size: int, seed: int, start_iter: int
                   ) -> Iterator[List[dict]]:
    """Batches of ``batch_size`` variants of distinct images (when there are enough),
    drawn from a generator seeded by (seed, iteration): a resumed run draws the same."""
    per_image: dict = {}
    for v, n in enumerate(cache.image_of):
        per_image.setdefault(n, []).append(v)
    images = sorted(per_image)
    iteration = start_iter
    while True:
        rng = np.random.default_rng([seed, iteration])
        chosen = rng.choice(len(images), size=batch_size, replace=batch_size > len(images))
        batch = []
        for n in chosen:
            options = per_image[images[n]]
            v = options[int(rng.integers(len(options)))]
            batch.append({"variant": v, "image_id": cache.image_ids[images[n]]})
        yield batch
        iteration += 1


class CachedTrainingSource:
    """What ``train(..., source=)`` trains on instead of DATASETS.TRAIN's images.

    The cache is built at the first ``batches`` call, i.e. after ``train`` has loaded
    MODEL.WEIGHTS or the resumed checkpoint, so it holds the features of those weights.
    """

    def __init__(self, cfg, model: nn.Module, records: Sequence[dict], thing_classes):
        self.cfg, self.model, self.records = cfg, model, list(records)
        self.thing_classes = list(thing_classes)
        self.module = None

    def batches(self, start_iter: int) -> Iterator[List[dict]]:
        r, h = self.cfg.MODEL.ROI_HEADS, self.cfg.MODEL.ROI_BOX_HEAD
        cache = build_roi_cache(self.cfg, self.model, self.records)
        self.module = CachedPredictorTraining(
            unwrap(self.model), cache, batch_size_per_image=r.BATCH_SIZE_PER_IMAGE,
            positive_fraction=r.POSITIVE_FRACTION, smooth_l1_beta=h.SMOOTH_L1_BETA)
        return cached_batches(cache, batch_size=self.cfg.SOLVER.IMS_PER_BATCH,
                              seed=self.cfg.SEED, start_iter=start_iter)
