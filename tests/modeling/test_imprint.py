import pytest
import torch
from torch import nn

from fewshot_det.modeling.fewshot.imprint import imprint_rows, mean_direction
from fewshot_det.modeling.roi_heads.fast_rcnn import cosine_logits


class CosineModel(nn.Module):
    """Just what imprinting reads: a cosine classifier's class rows."""

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.cls_score = nn.Linear(rows.shape[1], rows.shape[0], bias=False)
        self.cls_score.weight.data.copy_(rows)

    def cosine_classifier(self):
        return self


def _features(gen, n, direction, shared):
    # ReLU-like features: one large component every RoI has, plus the class's own
    return (shared * 3 + direction * 1.5 + 0.3 * torch.randn(n, 16, generator=gen)).relu()


def test_centred_rows_point_from_the_proposals_mean_to_the_class_mean():
    gen = torch.Generator().manual_seed(0)
    shared, own = torch.rand(16, generator=gen), torch.randn(16, generator=gen)
    examples, proposals = _features(gen, 5, own, shared), _features(gen, 50, 0, shared)
    model = CosineModel(torch.randn(3, 16, generator=gen))
    assert imprint_rows(model, {2: [examples[:2], examples[2:]]}, [1, 2],
                        mean_direction(proposals)) == [2]  # class 1: no examples, kept
    expected = mean_direction(examples) - mean_direction(proposals)
    row = model.cls_score.weight[2]
    torch.testing.assert_close(row / row.norm(), expected / expected.norm())


def test_a_centred_row_leaves_the_background_to_the_trained_rows():
    # A trained (discriminative) background row and a new class imprinted from 5 boxes:
    # the plain mean direction follows what every RoI shares and takes the background
    # RoIs too; the centred row takes only its class.
    gen = torch.Generator().manual_seed(1)
    shared, own = torch.rand(16, generator=gen), torch.randn(16, generator=gen)
    examples = _features(gen, 5, own, shared)
    background, objects = _features(gen, 200, 0, shared), _features(gen, 50, own, shared)
    trained_bg = mean_direction(background) - mean_direction(objects)
    won = {}
    for centre in (None, mean_direction(background)):
        model = CosineModel(torch.stack([trained_bg, torch.zeros(16)]))
        imprint_rows(model, {1: [examples]}, [1], centre)
        weight = model.cls_score.weight.detach()
        won[centre is None] = (
            (cosine_logits(background, weight, 20.0).argmax(1) == 1).float().mean().item(),
            (cosine_logits(objects, weight, 20.0).argmax(1) == 1).float().mean().item())
    assert won[True][0] > 0.9  # uncentred: the new row wins the background RoIs
    assert won[False][0] < 0.1 and won[False][1] > 0.9


@pytest.mark.parametrize("feats", [torch.ones(3, 4), torch.eye(4)])
def test_mean_direction_averages_unit_rows(feats):
    expected = (feats / feats.norm(dim=1, keepdim=True)).mean(0)
    torch.testing.assert_close(mean_direction(feats), expected, atol=1e-5, rtol=0)
