"""The declared interface of support-conditioned models (``meta_arch.support``)."""
import pytest
from torch import nn

from fewshot_det.modeling import SupportConditioned, is_support_conditioned
from fewshot_det.modeling.meta_arch import GeneralizedRCNN, SiameseRCNN, YOLOGrid
from fewshot_fixtures import tiny_model


def test_only_siamese_rcnn_is_support_conditioned():
    assert issubclass(SiameseRCNN, SupportConditioned)
    assert not issubclass(GeneralizedRCNN, SupportConditioned)
    assert not issubclass(YOLOGrid, SupportConditioned)
    assert is_support_conditioned(tiny_model())
    assert not is_support_conditioned(tiny_model(siamese=False))


def test_a_wrapper_is_looked_through_and_a_lookalike_is_not_enough():
    class Wrapper(nn.Module):  # what DistributedDataParallel exposes: ``.module``
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert is_support_conditioned(Wrapper(tiny_model()))
    assert not is_support_conditioned(Wrapper(tiny_model(siamese=False)))

    class Lookalike(nn.Module):  # has the method, does not declare the interface
        def set_supports(self, images, boxes, labels):
            return []

    assert not is_support_conditioned(Lookalike())


def test_the_interface_needs_all_three_methods():
    class Partial(nn.Module, SupportConditioned):
        def set_supports(self, images, boxes, labels):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_yolo_grid_is_not_support_conditioned():
    from test_yolo_grid import tiny_model as tiny_yolo  # the YOLO-grid tests' tiny model

    model = tiny_yolo()
    assert isinstance(model, YOLOGrid) and not is_support_conditioned(model)
