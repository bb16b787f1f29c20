"""Prototype calibration of the new classes' scores (``modeling.fewshot.calibration``,
FEWSHOT.CALIBRATION): the rescoring, the K-shot prototypes of a fine-tune, checkpoints."""
import pytest
import torch
import torch.nn.functional as F

from fewshot_det.checkpoint import load_weights
from fewshot_det.config import validate_cfg
from fewshot_det.engine.defaults import load_config
from fewshot_det.engine.fewshot import run_fewshot
from fewshot_det.export.exporter import export_model
from fewshot_det.modeling import build_model
from fewshot_det.modeling.backbone import EfficientNetLiteClassifier
from fewshot_det.modeling.fewshot import calibration
from fewshot_det.modeling.fewshot.calibration import PrototypeCalibration
from test_fewshot import TFA, edp, write_config  # noqa: F401 (fixture)

CALIBRATED = ["FEWSHOT.CALIBRATION.WEIGHTS", "imagenet:efficientnet-lite0"]


@pytest.fixture
def random_network(monkeypatch):
    """The Lite0 ImageNet classifier with random weights instead of the installed ones."""
    torch.manual_seed(0)
    net = EfficientNetLiteClassifier(variant="lite0").eval()
    monkeypatch.setattr(calibration, "load_feature_network", lambda weights: net)
    return net


def test_only_classes_with_a_prototype_are_rescored_and_resorted(random_network):
    cal = PrototypeCalibration(random_network, num_classes=3, alpha=0.25)
    image = torch.rand(3, 120, 160) * 255
    boxes = torch.tensor([[10.0, 10, 60, 70], [80, 20, 150, 110], [0, 0, 30, 30]])
    det = {"boxes": boxes, "scores": torch.tensor([0.9, 0.5, 0.3]),
           "labels": torch.tensor([1, 2, 2])}
    assert cal([image], [det])[0] is det  # no prototype yet: nothing changes
    feats = cal.encode(image, boxes)
    assert feats.shape == (3, calibration.FEATURE_SIZE)
    assert torch.allclose(feats.norm(dim=1), torch.ones(3))
    assert cal.set_prototypes([(image, boxes[1:2], [2])]) == {2: 1}
    assert cal.calibrated_ids() == [2]
    out = cal([image], [det])[0]
    cos = feats[1:] @ F.normalize(feats[1], dim=0)
    expected = {0.9: 0.9, 0.5: 0.25 * 0.5 + 0.75 * cos[0], 0.3: 0.25 * 0.3 + 0.75 * cos[1]}
    want = sorted(((float(v), b) for b, v in zip(boxes, expected.values())), reverse=True,
                  key=lambda t: t[0])
    assert torch.allclose(out["scores"], torch.tensor([w for w, _ in want]), atol=1e-5)
    assert torch.equal(out["boxes"], torch.stack([b for _, b in want]))
    assert cos[0] == pytest.approx(1.0, abs=1e-5)  # its own example: cosine 1


def test_the_same_pixels_in_bgr_give_the_same_features(random_network):
    rgb = PrototypeCalibration(random_network, num_classes=1)
    bgr = PrototypeCalibration(random_network, num_classes=1, input_format="BGR")
    image = torch.rand(3, 64, 64) * 255
    box = torch.tensor([[4.0, 4, 50, 60]])
    assert torch.allclose(rgb.encode(image, box), bgr.encode(image.flip(0), box), atol=1e-6)


def test_a_calibrated_finetune_saves_the_new_classes_prototypes(edp, tmp_path,  # noqa: F811
                                                                random_network):
    config, _ = write_config(tmp_path, edp, TFA, "calibrated")
    cfg = load_config(config, ["SOLVER.MAX_ITER", "1"] + CALIBRATED)
    run_fewshot(cfg, 2, [0])
    final = tmp_path / "calibrated" / "seed0" / "model_final.pth"
    rows = torch.load(final, weights_only=True)["model"]["calibration.prototypes"]
    # classes pole (in the base checkpoint), insulator, bird_nest (new): rows 2 and 3 set
    assert rows[0].norm() == 0 and rows[1].norm() == 0
    assert rows[2].norm() == pytest.approx(1) and rows[3].norm() == pytest.approx(1)
    # inference loads it whole; a checkpoint without prototypes loads strictly too
    seed_cfg = load_config(str(tmp_path / "calibrated" / "seed0" / "config.yaml"), [])
    model = build_model(seed_cfg)
    load_weights(model, str(final), strict=True)
    assert model.calibration.calibrated_ids() == [2, 3]
    saved = torch.load(final, weights_only=True)
    del saved["model"]["calibration.prototypes"]
    torch.save(saved, tmp_path / "uncalibrated.pth")
    fresh = build_model(seed_cfg)
    load_weights(fresh, str(tmp_path / "uncalibrated.pth"), strict=True)
    assert fresh.calibration.calibrated_ids() == []
    with pytest.raises(ValueError, match="FEWSHOT.CALIBRATION.WEIGHTS ''"):
        export_model(model.eval(), seed_cfg, str(tmp_path / "m.onnx"), "onnx")
    # what the refusal says to do: the same checkpoint in an uncalibrated model
    plain = build_model(load_config(str(tmp_path / "calibrated" / "seed0" / "config.yaml"),
                                    ["FEWSHOT.CALIBRATION.WEIGHTS", ""]))
    load_weights(plain, str(final), strict=True)
    assert plain.calibration is None


def test_calibration_settings_are_checked(edp, tmp_path):  # noqa: F811
    config, _ = write_config(tmp_path, edp, TFA, "bad")
    for opts, message in ((["FEWSHOT.CALIBRATION.ALPHA", "1.5"], "ALPHA must be in"),
                          (["FEWSHOT.CALIBRATION.CONTEXT", "-1"], "CONTEXT must be"),
                          (CALIBRATED + ["MODEL.META_ARCHITECTURE", "SiameseRCNN"],
                           "GeneralizedRCNN only")):
        with pytest.raises(ValueError, match=message):
            validate_cfg(load_config(config, opts))
    with pytest.raises(ValueError, match="must be one of"):
        calibration.load_feature_network("imagenet:resnet50")


def test_examples_taught_to_the_predictor_calibrate_their_classes(tmp_path, random_network):
    from test_predictor_supports import _cosine_checkpoint, _image

    import fewshot_det

    cfg, _ = _cosine_checkpoint(tmp_path)
    cfg.defrost()
    cfg.merge_from_list(CALIBRATED)
    predictor = fewshot_det.Predictor(cfg)  # the checkpoint has no prototypes: none yet
    assert predictor.model.calibration.calibrated_ids() == []
    predictor.set_supports({"bird_nest": [(_image(0), [10, 10, 50, 60])]})
    assert predictor.model.calibration.calibrated_ids() == [4]  # the grown class
    image = _image(0)
    expected = predictor.model.calibration.encode(
        torch.from_numpy(image.transpose(2, 0, 1).copy()).float(),
        torch.tensor([[10.0, 10, 50, 60]]))[0]
    assert torch.allclose(predictor.model.calibration.prototypes[4], expected, atol=1e-6)


def test_loading_the_network_leaves_the_seeded_stream_alone():
    from fewshot_det.checkpoint import pretrained

    pytest.importorskip(pretrained.PACKAGES["efficientnet-lite0"].module)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    net = calibration.load_feature_network("imagenet:efficientnet-lite0")
    assert torch.equal(torch.rand(4), expected)  # a calibrated fine-tune trains as without
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
