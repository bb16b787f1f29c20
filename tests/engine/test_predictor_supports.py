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


def test_predictor_supports_need_a_siamese_model(tmp_path):
    cfg = _checkpoint(tmp_path, siamese=False)
    with pytest.raises(ValueError, match="does not take support examples"):
        fewshot_det.Predictor(cfg, supports={"x": [(_image(0), [1, 1, 20, 20])]})
