"""A tiny model with the meta-architecture interface, for testing the engine alone."""
import torch
from torch import nn


class ToyDetector(nn.Module):
    """Predicts one box per image from pooled pixels; dropout draws from the torch RNG so
    that resume tests also check the RNG state is restored."""

    def __init__(self, nan_at_call: int = -1, dropout: float = 0.3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4, 4)
        self.nan_at_call, self.calls = nan_at_call, 0

    def forward(self, batch):
        feats = torch.stack([self.conv(x["image"][None] / 255).mean((2, 3))[0] for x in batch])
        pred = self.fc(self.drop(feats))  # N, 4 in [0, 1] units
        if not self.training:
            out = []
            for x, p in zip(batch, pred.sigmoid()):
                scale = torch.tensor([x["width"], x["height"]] * 2, dtype=torch.float32)
                box = torch.sort(p.view(2, 2), dim=0).values.t().reshape(4)[[0, 2, 1, 3]]
                out.append({"boxes": (box * scale)[None], "scores": torch.tensor([0.9]),
                            "labels": torch.tensor([1])})
            return out
        self.calls += 1
        target = torch.stack([x["instances"]["gt_boxes"].mean(0) / 100 if len(x["instances"]
                              ["gt_boxes"]) else torch.zeros(4) for x in batch])
        loss = ((pred - target) ** 2).mean()
        if self.calls == self.nan_at_call:
            loss = loss * float("nan")
        return {"loss_box": loss, "loss_aux": 0.1 * pred.abs().mean()}
