"""What the meta-architectures declare (``meta_arch.capabilities``): support conditioning, the
cosine classifier, cached RoI features, the crop-warm-up heads, the input form, and the
stages, which compose to exactly ``model(batch)``."""
import pytest
import torch
from torch import nn

from fewshot_det.modeling import Detector, SupportConditioned, is_support_conditioned
from fewshot_det.modeling.preprocess import rescale_detections
from fewshot_det.modeling.meta_arch import GeneralizedRCNN, SiameseRCNN, YOLOGrid
from fewshot_fixtures import query, supports, tiny_model


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


def _three_families():
    from test_yolo_grid import tiny_model as tiny_yolo

    return {"rcnn": tiny_model(siamese=False), "siamese": tiny_model(), "yolo": tiny_yolo(),
            "tfa": tiny_model("MODEL.ROI_BOX_HEAD.PREDICTOR", "CosineSimOutputLayers",
                              siamese=False)}


def test_each_family_declares_what_it_can_do():
    m = _three_families()
    assert all(isinstance(model, Detector) for model in m.values())
    assert m["tfa"].cosine_classifier() is m["tfa"].roi_heads.box_predictor
    assert [m[k].cosine_classifier() for k in ("rcnn", "siamese", "yolo")] == [None] * 3
    assert [m[k].caches_roi_features() for k in ("rcnn", "tfa", "siamese", "yolo")] == \
        [True, True, False, False]
    assert [m[k].trains_heads_on_crops() for k in ("rcnn", "siamese", "yolo")] == \
        [True, False, False]
    assert m["yolo"].fixed_input_size() == m["yolo"].input_size
    assert m["rcnn"].fixed_input_size() is None and m["siamese"].fixed_input_size() is None
    assert m["rcnn"].body() is m["rcnn"].backbone.body
    assert m["yolo"].body() is m["yolo"].backbone.body
    assert m["rcnn"].detectable_class_ids() == [1, 2, 3]
    assert m["siamese"].detectable_class_ids() == []  # no prototype yet
    s = supports([1, 3], seed=0)
    m["siamese"].set_supports(s["images"], s["boxes"], s["labels"])
    assert m["siamese"].detectable_class_ids() == [1, 3]


@pytest.mark.parametrize("family", ["rcnn", "siamese", "yolo"])
def test_the_stages_compose_to_the_forward_pass(family):
    model = _three_families()[family].eval()
    if family == "siamese":
        s = supports([1, 2], seed=1)
        model.set_supports(s["images"], s["boxes"], s["labels"])
    side = model.fixed_input_size()
    batch = [query(h=side or 96, w=side or 128, seed=3), query(h=side or 80, w=side or 100,
                                                                seed=4)]
    for item in batch:
        item.update(height=150, width=200)
    with torch.no_grad():
        expected = model(batch)
        images = model.preprocess(batch)
        if side:
            sizes = [(side, side)] * 2
            got = rescale_detections(model.postprocess(model.predict(images)), batch, sizes)
        else:
            sizes = images.image_sizes
            got = rescale_detections(model.inference(images, batch), batch, sizes)
    assert sum(len(d["boxes"]) for d in expected) > 0
    for e, g in zip(expected, got):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(e[key], g[key])


def test_rcnn_stages_give_the_box_predictor_its_features():
    model = tiny_model(siamese=False).eval()
    batch = [query(h=96, w=128, boxes=[[10, 12, 60, 70]], labels=[2], seed=5)]
    with torch.no_grad():
        images = model.preprocess(batch)
        features = model.features(images)
        proposals, losses = model.proposals(images, features)
        feats = model.box_features(features, proposals)
        logits, deltas = model.predict_boxes(feats)
        detections = model.postprocess(logits, deltas, proposals, images)
    assert losses == {} and feats.shape == (len(proposals[0]), model.roi_heads.box_head.output_size)
    assert logits.shape == (len(feats), 4) and deltas.shape == (len(feats), 12)
    assert torch.equal(detections[0]["scores"], model.inference(images)[0]["scores"])
