"""Class prototypes: support features averaged over shots, and the bank that caches them.

Shape glossary: N query images, M support crops, K classes (columns of one forward),
D box-head width.

A class prototype is the box head's feature of its support boxes (RoIAlign at the box's
level + the FC head), averaged over the shots: the same space as the query RoI features,
so the predictor derives the class's classifier weight from it and the proposal stage
ranks the RPN's candidates by how well they match it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn


@dataclass
class Prototypes:
    """Per-image class columns for one forward.

    Attributes:
        head: float [N, K, D].
        class_ids: int64 [N, K], the dataset label (1..K_total) of every column.
        valid: bool [N, K], False for columns without a prototype (never scored).
    """

    head: Tensor
    class_ids: Tensor
    valid: Tensor

    @property
    def num_columns(self) -> int:
        return self.class_ids.shape[1]


def average_shots(values: Tensor, labels: Tensor, class_ids: Tensor) -> Tensor:
    """Mean of ``values`` over the shots of each class of ``class_ids``.

    Args:
        values: float [M, ...], one row per support crop.
        labels: int64 [M], class id of every crop.
        class_ids: int64 [K], the classes wanted, in column order.
    Returns:
        float [K, ...].
    Raises:
        ValueError: a class of ``class_ids`` has no crop.
    """
    onehot = (labels[None, :] == class_ids[:, None]).to(values.dtype)  # K, M
    counts = onehot.sum(dim=1)
    if (counts == 0).any():
        missing = class_ids[counts == 0].tolist()
        raise ValueError(f"support set has no crop of class ids {missing} "
                         f"(crops are of {sorted(set(labels.tolist()))})")
    flat = values.reshape(len(values), -1)
    return ((onehot @ flat) / counts[:, None]).reshape((len(class_ids),) + values.shape[1:])


class PrototypeBank(nn.Module):
    """Prototypes of classes 1..K kept with the model (buffers, so saved in checkpoints).

    Filled two ways:
    * ``update``: during training, a running mean of the episodes' prototypes (detached);
      with a decaying learning rate the last updates use nearly the final weights;
    * ``assign``: exactly, from a support set encoded at inference (``set_supports``).

    Args:
        num_classes: K.
        head_dim: D.
    """

    def __init__(self, *, num_classes: int, head_dim: int):
        super().__init__()
        self.register_buffer("head", torch.zeros(num_classes, head_dim))
        # Number of updates folded in (0 = no prototype: the class is not scored).
        self.register_buffer("count", torch.zeros(num_classes))

    @property
    def num_classes(self) -> int:
        return len(self.count)

    def grow(self, num_classes: int) -> None:
        """Add empty rows up to ``num_classes`` (classes added at inference time)."""
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        for name in ("head", "count"):
            old = getattr(self, name)
            setattr(self, name, torch.cat([old, old.new_zeros((extra,) + old.shape[1:])]))

    @torch.no_grad()
    def update(self, class_ids: Tensor, head: Tensor, momentum: float) -> None:
        """Fold the prototypes of a batch into the running means.

        Args:
            class_ids: int64 [B] in 1..K (a class may repeat; its rows are averaged first).
            head: float [B, D].
            momentum: weight of the old value (a class seen for the first time is copied).
        """
        classes = torch.unique(class_ids)
        head_mean = average_shots(head.detach().float(), class_ids, classes)
        rows = classes - 1
        seen = (self.count[rows] > 0).float()
        m = (momentum * seen)[:, None]
        self.head[rows] = m * self.head[rows] + (1 - m) * head_mean
        self.count[rows] += 1

    @torch.no_grad()
    def assign(self, class_ids: Tensor, head: Tensor) -> None:
        """Set the prototypes of ``class_ids`` (int64 [B], distinct, 1..K) exactly."""
        self.grow(int(class_ids.max()))
        rows = class_ids - 1
        self.head[rows] = head.detach().float()
        self.count[rows] = 1

    def known_classes(self) -> Tensor:
        """int64 [K_known]: the class ids (1..K) that have a prototype."""
        return torch.nonzero(self.count > 0).squeeze(1) + 1

    def prototypes(self, num_images: int, class_ids: Optional[Sequence[int]] = None
                   ) -> Prototypes:
        """Columns 1..K (or ``class_ids``) of the bank, repeated for ``num_images`` images."""
        ids = torch.arange(1, self.num_classes + 1, device=self.count.device) \
            if class_ids is None else torch.as_tensor(class_ids, device=self.count.device)
        rows = ids - 1

        def rep(t: Tensor) -> Tensor:
            return t[rows][None].expand((num_images,) + t[rows].shape)

        return Prototypes(head=rep(self.head),
                          class_ids=ids[None].expand(num_images, len(ids)),
                          valid=rep(self.count > 0))
