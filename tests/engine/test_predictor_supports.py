import numpy as np
import pytest
import torch

import fewshot_det
from fewshot_fixtures import tiny_cfg, tiny_model


def _image(seed):
    return np.random.default_rng(seed).integers(0, 255, (80, 96, 3), dtype=np.uint8)


def _checkpoint(tmp_path, siamese=True):
    model = tiny_model(siamese=siamese)
    path = str(tmp_path / "model.pth")
    torch.save({"model": model.state_dict(), "extra": {"thing_classes": ["a", "b", "c"]}}, path)
    cfg = tiny_cfg(*(["MODEL.WEIGHTS", path, "INPUT.MIN_SIZE_TEST", "80"]), siamese=siamese)
    return cfg


def test_predictor_adds_a_class_from_supports(tmp_path):
    cfg = _checkpoint(tmp_path)
    predictor = fewshot_det.Predictor(cfg, supports={"bird_nest": [(_image(0), [10, 10, 50, 60]),
                                                                   (_image(1), [30, 5, 90, 70])]})
    assert predictor.class_names == ["a", "b", "c", "bird_nest"]
    out = predictor(_image(2))
    # the trained classes have no prototype in this untrained checkpoint: only bird_nest
    assert len(out["labels"]) and set(out["labels"].tolist()) == {4}
    assert set(out["class_names"]) == {"bird_nest"}
    predictor.set_supports({"b": [(_image(3), [0, 0, 40, 40])]})  # a trained class by name
    assert set(predictor(_image(2))["labels"].tolist()) <= {2, 4}
    with pytest.raises(ValueError, match="no example"):
        predictor.set_supports({"c": []})


def test_a_linear_classifier_takes_no_class_from_examples_and_names_the_configs(tmp_path):
    cfg = _checkpoint(tmp_path, siamese=False)
    with pytest.raises(ValueError, match=r"FastRCNNOutputLayers\) takes no classes from "
                                         r"examples.*fewshot_siamese_base_shapes.yaml.*"
                                         r"fewshot_tfa_ft_shapes.yaml"):
        fewshot_det.Predictor(cfg, supports={"x": [(_image(0), [1, 1, 20, 20])]})


def _cosine_checkpoint(tmp_path):
    cosine = ("MODEL.ROI_BOX_HEAD.PREDICTOR", "CosineSimOutputLayers")
    model = tiny_model(*cosine, siamese=False)
    path = str(tmp_path / "tfa.pth")
    torch.save({"model": model.state_dict(), "extra": {"thing_classes": ["a", "b", "c"]}}, path)
    return tiny_cfg(*cosine, "MODEL.WEIGHTS", path, "INPUT.MIN_SIZE_TEST", "80",
                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", siamese=False), model


def test_a_cosine_classifier_imprints_new_and_trained_classes_from_examples(tmp_path):
    cfg, trained = _cosine_checkpoint(tmp_path)
    examples = {"bird_nest": [(_image(0), [10, 10, 50, 60]), (_image(1), [30, 5, 90, 70])],
                "b": [(_image(3), [0, 0, 40, 40])]}
    predictor = fewshot_det.Predictor(cfg, supports=examples)
    assert predictor.class_names == ["a", "b", "c", "bird_nest"]
    rows = predictor.model.cosine_classifier().cls_score.weight
    old = trained.roi_heads.box_predictor.cls_score.weight
    assert rows.shape[0] == 5  # background + 4 classes
    assert torch.equal(rows[[0, 1, 3]], old[[0, 1, 3]])  # untaught rows kept by the surgery
    assert not torch.allclose(rows[2], old[2])  # "b" re-imprinted from its example
    out = predictor(_image(0))
    assert 4 in out["labels"].tolist() and "bird_nest" in out["class_names"]


def test_a_support_file_is_read_by_the_predictor(tmp_path):
    import cv2

    from fewshot_det.data.support_file import SupportExample, write_support_file

    cfg, _ = _cosine_checkpoint(tmp_path)
    photo = str(tmp_path / "photo.png")
    cv2.imwrite(photo, _image(0))
    write_support_file(str(tmp_path / "supports.json"),
                       {"bird_nest": [SupportExample(photo, (10.0, 10.0, 50.0, 60.0))]})
    predictor = fewshot_det.Predictor(cfg, supports=str(tmp_path / "supports.json"))
    assert predictor.class_names == ["a", "b", "c", "bird_nest"]


@pytest.mark.parametrize("example, message", [
    ((_image(0), [300, 300, 400, 400]),
     r"supports: class 'bird_nest', example 2 of 2: box \[300, 300, 400, 400\] lies outside "
     r"its 96 x 80 image"),
    ((_image(0), [-50, -40, -10, -5]), r"example 2 of 2: box \[-50, -40, -10, -5\] lies outside"),
    ((_image(0), []), r"example 2 of 2: a box is 4 numbers \[x1, y1, x2, y2\], got \[\]"),
    ((_image(0), [1, 2, 3]), r"a box is 4 numbers \[x1, y1, x2, y2\], got \[1, 2, 3\]"),
    ((_image(0), [10, 10, float("nan"), 40]), r"box \[10, 10, nan, 40\] has a non-finite"),
    ((_image(0), [40, 10, 10, 40]), r"box \[40, 10, 10, 40\] has no area"),
    ([10, 10, 50, 60], r"example 2 of 2: expected an \(image, box\) pair, got list"),
    ((np.zeros((5, 5), np.uint8), [1, 1, 4, 4]), r"example 2 of 2: expects an H x W x 3"),
])
def test_predictor_refuses_bad_support_examples_naming_them(tmp_path, example, message):
    predictor = fewshot_det.Predictor(_checkpoint(tmp_path))
    with pytest.raises(ValueError, match=message):
        predictor.set_supports({"bird_nest": [(_image(1), [10, 10, 50, 60]), example]})


def test_a_support_box_reaching_past_its_image_is_clipped_with_a_warning(tmp_path, caplog):
    predictor = fewshot_det.Predictor(_checkpoint(tmp_path))
    predictor.set_supports({"nest": [(_image(0), [-10, 20, 120, 60])]})
    assert "supports: class 'nest', example 1 of 1: box [-10, 20, 120, 60] reaches past its " \
           "96 x 80 image; clipped to [0, 20, 96, 60]" in caplog.text
    assert predictor.class_names[-1] == "nest"


def test_supports_must_be_a_dict_of_example_lists(tmp_path):
    predictor = fewshot_det.Predictor(_checkpoint(tmp_path))
    with pytest.raises(ValueError, match="supports must be a non-empty"):
        predictor.set_supports([(_image(0), [1, 1, 20, 20])])
    with pytest.raises(ValueError, match="class 'x': expected a list of"):
        predictor.set_supports({"x": _image(0)})


def test_a_refused_support_set_changes_nothing(tmp_path):
    predictor = fewshot_det.Predictor(_checkpoint(tmp_path))
    with pytest.raises(ValueError, match="lies outside"):
        predictor.set_supports({"nest": [(_image(0), [10, 10, 50, 60])],
                                "pole": [(_image(1), [500, 10, 600, 60])]})
    assert predictor.class_names == ["a", "b", "c"]
