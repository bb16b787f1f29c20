"""Proposal recall of given classes (AR@k), to compare proposal generators.

Shape glossary: P proposals of one image, G ground-truth boxes of one image, T IoU
thresholds.

``AR@k`` is COCO's average recall: the fraction of GT boxes covered by one of an image's
top-k proposals, averaged over IoU thresholds 0.50:0.05:0.95 (``R50@k`` at IoU 0.5 only).
Recall is pooled over every GT instance of the chosen classes (not difficult, not crowd).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

IOU_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))


@contextmanager
def proposal_limits(proposal_generator: nn.Module, topk: int):
    """Temporarily keep ``topk`` proposals per image at test time (and as many per level
    before NMS, if the configured number is smaller)."""
    pre, post = proposal_generator.pre_nms_topk, proposal_generator.post_nms_topk
    proposal_generator.pre_nms_topk = (pre[0], max(pre[1], topk))
    proposal_generator.post_nms_topk = (post[0], topk)
    try:
        yield
    finally:
        proposal_generator.pre_nms_topk, proposal_generator.post_nms_topk = pre, post


@torch.no_grad()
def model_proposals(model: nn.Module, batch: List[dict],
                    class_ids: Optional[Sequence[int]] = None,
                    rescore: bool = False) -> List[Tensor]:
    """Proposals of a two-stage model in eval mode, in each image's ORIGINAL pixels.

    Uses ``model.propose(batch, class_ids)`` when the model has it (support-conditioned
    models: proposals for the prototypes of ``class_ids``, default all known classes),
    else backbone -> proposal_generator (``GeneralizedRCNN``'s components). ``rescore``:
    re-ranked by the support score (``SiameseRCNN.propose``; support-conditioned models
    only).

    Returns:
        per image float [P, 4] XYXY, best first.
    """
    from ..meta_arch.preprocess import normalize_and_pad

    if rescore and not hasattr(model, "propose"):
        raise ValueError(f"rescore=True needs a support-conditioned model (with 'propose'); "
                         f"{type(model).__name__} has none")
    if hasattr(model, "propose"):
        proposals = model.propose(batch, class_ids, rescore=True) if rescore \
            else model.propose(batch, class_ids)
    else:
        images = normalize_and_pad([item["image"] for item in batch], model.pixel_mean,
                                   model.pixel_std, model.backbone.size_divisibility)
        proposals = model.proposal_generator(images, model.backbone(images.tensors))[0]
    out = []
    for boxes, item in zip(proposals, batch):
        h, w = item["image"].shape[-2:]
        scale = boxes.new_tensor([item["width"] / w, item["height"] / h] * 2)
        out.append(boxes * scale)
    return out


def recall_at(max_ious: Tensor, thresholds: Sequence[float] = IOU_THRESHOLDS) -> float:
    """Mean over ``thresholds`` of the fraction of ``max_ious`` (float [G]) >= threshold."""
    if not len(max_ious):
        return -1.0
    return float(torch.stack([(max_ious >= t).float().mean() for t in thresholds]).mean())


def gt_boxes_of(record: dict, class_ids: Iterable[int]) -> Tensor:
    """float [G, 4] XYXY of the record's boxes of ``class_ids`` (not difficult / crowd)."""
    ids = set(int(c) for c in class_ids)
    boxes = [a["bbox"] for a in record["annotations"] if a["category_id"] in ids
             and not a.get("difficult", 0) and not a.get("iscrowd", 0)]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


@torch.no_grad()
def proposal_recall(model: nn.Module, loader, records: Sequence[dict], class_ids: Iterable[int],
                    *, topks: Sequence[int] = (100, 1000), conditioned: bool = True,
                    support_ids: Optional[Iterable[int]] = None,
                    rescore: bool = False) -> Dict[str, float]:
    """Recall of the ``class_ids`` GT boxes by the model's top-k proposals.

    Args:
        model: a two-stage model (see ``model_proposals``); run in eval mode.
        loader: the test loader (batches of model inputs, in ``records`` order).
        records: the dataset records of the loader's images (ground truth).
        class_ids: classes whose instances count (e.g. the novel classes).
        topks: values of k.
        conditioned: a support-conditioned model proposes for the prototypes of
            ``class_ids`` only (Attention-RPN's use: "find objects like these supports");
            False: for every class it knows. Plain RPNs ignore it.
        support_ids: condition on these classes' prototypes instead (with
            ``conditioned``). The control for "the support helps": conditioned on other
            classes' supports, an attention that uses the support should recall the
            ``class_ids`` objects less well.
        rescore: rank the proposals by their support score (``model_proposals``).
    Returns:
        {"AR@k": ..., "R50@k": ... for every k, "num_gt": G total, "num_images"}; -1 when
        there is no GT instance.
    """
    class_ids = list(class_ids)
    propose_for = list(support_ids) if support_ids is not None else class_ids
    by_id = {str(r["image_id"]): r for r in records}
    max_iou = {k: [] for k in topks}
    was_training = model.training
    model.eval()
    try:
        with proposal_limits(model.proposal_generator, max(topks)):
            for batch in loader:
                proposals = model_proposals(model, batch, propose_for if conditioned else None,
                                            rescore)
                for item, props in zip(batch, proposals):
                    gt = gt_boxes_of(by_id[str(item["image_id"])], class_ids)
                    for k in topks:
                        top = props[:k].float().cpu()
                        max_iou[k].append(box_iou(gt, top).max(dim=1).values if len(top)
                                          else torch.zeros(len(gt)))
    finally:
        model.train(was_training)
    out: Dict[str, float] = {}
    for k in topks:
        ious = torch.cat(max_iou[k]) if max_iou[k] else torch.zeros(0)
        out[f"AR@{k}"] = recall_at(ious)
        out[f"R50@{k}"] = recall_at(ious, (0.5,))
    out["num_gt"] = int(sum(len(gt_boxes_of(r, class_ids)) for r in records))
    out["num_images"] = len(records)
    return out
