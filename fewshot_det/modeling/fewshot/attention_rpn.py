"""Attention RPN: objectness conditioned on the support, for K classes at once.

Shape glossary: N images, K class columns, L levels, A anchors per cell, C channels,
k support kernel side, E = C*k*k, D scorer width, H/W feature height/width,
R = sum over levels of H*W*A anchors, M support crops.

Design (Attention-RPN of Fan et al. 2020, generalised from its 2-way episodes to K columns):

1. Query and support share the backbone (the siamese branch). The support kernel
   ``q_k`` of class k is the support box's FPN feature RoIAligned to k x k at the box's
   natural level (anchor size closest to the box), and is correlated with every query
   level: FPN levels are scale-normalised, so an object seen at its own level looks alike
   whatever its size. ``p`` is the query's k x k patch around a cell. Both are
   RMS-normalised, so the correlation measures similarity, not feature magnitude.
2. Depth-wise correlation ``r_c = sum_j p[c, j] * q_k[c, j]`` (per channel c, over the
   k x k positions j; SiamRPN++ style, k = 1 is Attention-RPN's channel attention),
   scored by a small network: 1x1 conv to D channels, ReLU, 1x1 conv to A logits per
   cell. The first conv is linear, so it is folded into per-class weights
   ``W[d, c] * q_k[c, j]``: a k x k convolution of the query, divided by each patch's
   RMS (no [N, K, C, H, W] tensor, no unfolded patches; columns go in chunks of
   ``COLUMN_CHUNK``, which bounds the [K*D, H, W] activations at inference).
   History (BENCHMARKS.md): a linear score of the raw correlation of the RPN's hidden
   features learned "every object is a negative" and could not tell classes apart. How
   much class identity the features carry bounds what this step can do:
   ``benchmarks/rpn_feature_probe.py`` measures it.
3. Objectness of column k = the plain RPN head's logit (a shared prior) + the attention
   logit of step 2. The prior is also trained class-agnostically on every GT box (all
   classes of the query), as a plain RPN; learned from scratch, the correlation alone gave
   half the plain RPN's recall. Box deltas are class-agnostic (from the RPN head), trained
   on every GT box.
4. Proposals are merged across classes: an anchor's score is its best column's logit, then
   the usual per-level top-k and per-image top-k; NMS keeps the box of best prior in each
   cluster (quality-guided, ``find_top_proposals``): the prior was trained on box overlap
   alone, and ranking boxes by the class score inside a cluster lost localisation
   (novel AR@1000 0.467 vs the plain RPN's 0.486).
5. Per-column loss: an anchor is positive for column k if it matches (IoU >= 0.7, or best
   anchor) a GT box of column k's class, negative below 0.3 with those boxes. Each
   (image, column) samples ``batch_size_per_image`` anchors, plus as many anchors matching
   objects of other classes (hard negatives) as it has positives: the attention must tell
   the support's class from other objects. Sampled at random, hard negatives were a handful
   among background anchors the prior already rejects (the correlation never left its
   initialisation); all of them (most objects belong to other columns) taught the
   correlation to push every object down, below background, which cost the merged
   ranking (R50@5 0.41 vs 0.59 for the plain RPN). Balanced, a correlation that cannot
   tell classes apart stays near zero and leaves the prior's ranking as it is.

What it does not do (BENCHMARKS.md, sessions 5-6): on the quick start's features it does
not pick the support's class. Given the wrong classes' supports, it ranks the same, and in
dense scenes it ranks below the plain RPN. Proposals that follow the support come from
the RoI-level step, ``SiameseRCNN.propose(rescore=True)``, which matches box-aligned
features through the box head. That ranking does not improve detection over giving the
box head more proposals (session 7); ``SupportMatchingRPN`` is a training-free
alternative that does not cost recall in clutter.

"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import roi_align

from ..losses import rpn_losses
from ..proposal_generator.proposals import find_top_proposals
from ..proposal_generator.rpn import RPN, flatten_predictions
from ..registry import PROPOSAL_GENERATOR_REGISTRY
from ..sampling import match_boxes, subsample_labels
from ..utils import upcast
from .prototypes import Prototypes

COLUMN_CHUNK = 16  # class columns scored per convolution (memory bound, see class_logits)


def rms_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``x`` divided by the root mean square of its last dimension."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


@PROPOSAL_GENERATOR_REGISTRY.register()
class AttentionRPN(RPN):
    """Support-conditioned RPN (module doc).

    Args:
        attention_dim: hidden width D of the correlation scorer (MODEL.RPN.ATTENTION_DIM).
        kernel_size: side k of the support kernel (MODEL.RPN.ATTENTION_KERNEL).
        kwargs: as ``RPN``.
    """

    def __init__(self, *, attention_dim: int = 64, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"MODEL.RPN.ATTENTION_KERNEL must be odd and >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        cls_logits = self.head.cls_logits
        self.attention = nn.Sequential(
            nn.Conv2d(cls_logits.in_channels, attention_dim, 1), nn.ReLU(),
            nn.Conv2d(attention_dim, cls_logits.out_channels, 1))
        # The hidden conv keeps PyTorch's default init: with both layers at std 0.01 (the
        # RPN's init) the scorer's gradients vanished and it never left zero.
        nn.init.normal_(self.attention[2].weight, std=0.01)
        nn.init.constant_(self.attention[2].bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape) -> "AttentionRPN":
        return cls(attention_dim=cfg.MODEL.RPN.ATTENTION_DIM,
                   kernel_size=cfg.MODEL.RPN.ATTENTION_KERNEL,
                   **cls.arguments_from_config(cfg, input_shape))

    @property
    def prototype_dim(self) -> int:
        """E = C * k * k, the length of one level's flattened support kernel."""
        return self.head.cls_logits.in_channels * self.kernel_size ** 2

    def hidden(self, features: List[Tensor]) -> List[Tensor]:
        """The shared 3x3 conv + ReLU of every level: per level [N, C, H, W]."""
        return [F.relu(self.head.conv(x)) for x in features]

    def support_features(self, features: Dict[str, Tensor], boxes: List[Tensor]) -> Tensor:
        """Support kernels of individual crops (step 1 of the module doc).

        Args:
            features: backbone outputs of the crops (containing ``in_features``).
            boxes: per crop float [1, 4] XYXY in the crop's pixels.
        Returns:
            float [M, L, E]: the same kernel for every level.
        """
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1)
                          for i, b in enumerate(boxes)])
        feats = [features[f] for f in self.in_features]
        level = self.natural_level(rois[:, 1:])  # M
        k = self.kernel_size
        kernels = rois.new_zeros(len(rois), self.prototype_dim)
        for lvl, (t, stride) in enumerate(zip(feats, self.anchor_generator.strides)):
            rows = torch.nonzero(level == lvl).squeeze(1)
            if len(rows):
                kernels[rows] = roi_align(t, rois[rows].to(t.dtype), (k, k),
                                          spatial_scale=1.0 / stride, sampling_ratio=2,
                                          aligned=True).flatten(1).to(kernels.dtype)
        return kernels[:, None].expand(-1, len(feats), -1)

    def natural_level(self, boxes: Tensor) -> Tensor:
        """int64 [M]: the level whose anchors are closest in size (log scale) to each box."""
        log_sizes = torch.tensor([sum(map(math.log2, s)) / len(s)  # geometric mean
                                  for s in self.anchor_generator.sizes],
                                 dtype=boxes.dtype, device=boxes.device)
        side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1).sqrt()
        return (side[:, None].log2() - log_sizes[None]).abs().argmin(dim=1)

    def class_logits(self, features: List[Tensor], prototypes: Tensor) -> List[Tensor]:
        """Per level attention logits of every column (steps 1-2 of the module doc).

        Args:
            features: per level query features [N, C, H, W].
            prototypes: float [N, K, L, E] support kernels.
        Returns:
            per level [N, K*A, H, W] (column-major: index k*A + a).
        """
        hidden_layer, logits_layer = self.attention[0], self.attention[2]
        w = hidden_layer.weight.flatten(1)  # D, C
        q = rms_normalize(prototypes.to(w.dtype))
        n, num_cols = q.shape[:2]
        k = self.kernel_size
        c = w.shape[1]
        out = []
        for level, t in enumerate(features):
            h, wd = t.shape[-2:]
            # 1 / RMS of every k x k patch (zero padding counted, as F.unfold would)
            inv_rms = torch.rsqrt(F.avg_pool2d(t.pow(2).mean(1, keepdim=True), k, stride=1,
                                               padding=k // 2, count_include_pad=True) + 1e-6)
            per_image = []
            for i in range(n):
                # sum_c W[d, c] sum_j q[c, j] patch[c, j] = a k x k conv with folded weights
                kernel = q[i, :, level].view(num_cols, 1, c, k, k) * w[None, :, :, None, None]
                chunks = []
                for cols in kernel.split(COLUMN_CHUNK):  # bounds the [cols*D, H, W] tensor
                    x = F.conv2d(t[i:i + 1], cols.flatten(0, 1).to(t.dtype), padding=k // 2)
                    bias = hidden_layer.bias.repeat(len(cols))[None, :, None, None]
                    x = x * inv_rms[i:i + 1] + bias
                    x = F.relu(x).view(len(cols), -1, h, wd)  # cols, D, H, W
                    chunks.append(logits_layer(x).view(1, -1, h, wd))
                per_image.append(torch.cat(chunks, dim=1))
            out.append(torch.cat(per_image))
        return out

    def forward(self, images: ImageList, features: Dict[str, Tensor], prototypes: Prototypes,
                targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """
        Args:
            images: padded query batch.
            features: backbone outputs of the queries.
            prototypes: K columns per image (``rpn`` [N, K, L, E], ``valid``).
            targets: training only, per image {"gt_boxes" [M, 4], "gt_labels" [M]} with
                DATASET class ids; a box is positive for the columns of its class.
        Returns:
            (per image proposals float [P, 4], sorted by merged objectness;
             {"loss_rpn_cls", "loss_rpn_loc"} in training, else {})
        """
        feats = [features[f] for f in self.in_features]
        hidden = self.hidden(feats)
        num_cols = prototypes.num_columns
        per_level = self.class_logits(feats, prototypes.rpn)
        prior, deltas = flatten_predictions([self.head.cls_logits(t) for t in hidden],
                                            [self.head.bbox_pred(t) for t in hidden])
        # N*K, R in the anchor order of flatten_predictions (cell-major, anchor-minor)
        attn = torch.cat([x.view(x.shape[0] * num_cols, -1, *x.shape[-2:])
                          .permute(0, 2, 3, 1).flatten(1) for x in per_level], dim=1)
        n = deltas.shape[0]
        prior, deltas = upcast(prior), upcast(deltas)  # N, R / N, R, 4
        logits = prior[:, None, :] + upcast(attn).view(n, num_cols, -1)  # N, K, R
        anchors = self.anchor_generator([tuple(f.shape[-2:]) for f in feats],
                                        tuple(images.tensors.shape[-2:]), logits.device)
        num_anchors_per_level = [len(a) for a in anchors]
        anchors = torch.cat(anchors)
        merged = logits.detach().masked_fill(~prototypes.valid[:, :, None], float("-inf"))
        merged = merged.max(dim=1).values  # N, R
        boxes = self.box_coder.decode_single(
            deltas.detach().reshape(-1, 4), anchors.repeat(n, 1)).view(n, -1, 4)
        mode = int(not self.training)
        proposals = find_top_proposals(
            boxes, merged, num_anchors_per_level, images.image_sizes,
            pre_nms_topk=self.pre_nms_topk[mode], post_nms_topk=self.post_nms_topk[mode],
            nms_thresh=self.nms_thresh, min_size=self.min_size, quality=prior.detach())
        if not self.training:
            return proposals, {}
        if targets is None:
            raise ValueError("AttentionRPN in training mode needs targets")
        losses = self.losses(anchors, logits, prior, deltas, targets, prototypes.class_ids)
        return proposals, {k: v * self.loss_weight for k, v in losses.items()}

    def losses(self, anchors: Tensor, logits: Tensor, prior: Tensor, deltas: Tensor,
               targets: List[Dict[str, Tensor]], class_ids: Tensor) -> Dict[str, Tensor]:
        """Per-column objectness BCE; class-agnostic prior BCE and smooth-L1 on all boxes.

        Args:
            anchors: [R, 4]; logits: [N, K, R]; prior: [N, R]; deltas: [N, R, 4];
            class_ids: int64 [N, K].
        Returns:
            {"loss_rpn_cls" (columns), "loss_rpn_prior", "loss_rpn_loc"}
        """
        col_labels = self.label_columns(anchors, targets, class_ids)  # N, K, R
        valid = col_labels >= 0
        loss_cls = F.binary_cross_entropy_with_logits(
            logits[valid], col_labels[valid].to(logits.dtype), reduction="sum")
        gt_labels, gt_deltas = self.label_and_sample_anchors(anchors, targets)  # N, R
        agnostic = rpn_losses(prior, deltas, gt_labels, gt_deltas,
                              smooth_l1_beta=self.smooth_l1_beta)
        return {"loss_rpn_cls": loss_cls / valid.sum().clamp(min=1),
                "loss_rpn_prior": agnostic["loss_rpn_cls"],
                "loss_rpn_loc": agnostic["loss_rpn_loc"]}

    @torch.no_grad()
    def label_columns(self, anchors: Tensor, targets: List[Dict[str, Tensor]],
                      class_ids: Tensor) -> Tensor:
        """Sampled anchor labels of every (image, column): 1, 0 or -1 (not sampled).

        Args:
            class_ids: int64 [N, K], the dataset class of every column.
        Returns:
            int64 [N, K, R].
        """
        out = torch.full(tuple(class_ids.shape) + (len(anchors),), -1, dtype=torch.int64,
                         device=anchors.device)
        for i, target in enumerate(targets):
            for k, class_id in enumerate(class_ids[i].tolist()):
                gt = target["gt_boxes"][target["gt_labels"] == class_id]
                labels = torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device)
                if len(gt):
                    matched = match_boxes(gt, anchors, self.matcher)
                    labels[matched >= 0] = 1
                    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
                sampled = subsample_labels(labels, self.batch_size_per_image,
                                           self.positive_fraction)
                others = target["gt_boxes"][target["gt_labels"] != class_id]
                num_pos = int((sampled == 1).sum())
                if len(others) and num_pos:  # hard negatives: objects of other classes
                    hard = (match_boxes(others, anchors, self.matcher) >= 0) & (labels == 0)
                    hard = torch.nonzero(hard).squeeze(1)
                    sampled[hard[torch.randperm(len(hard), device=hard.device)[:num_pos]]] = 0
                out[i, k] = sampled
        return out
