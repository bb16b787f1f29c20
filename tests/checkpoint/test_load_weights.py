"""load_weights: every format lands tensors in the right places; clear reports and errors."""
import os
import pickle

import pytest
import torch
from weights_fixtures import (tiny_detector, to_caffe2_names, to_detectron2_names,
                              torchvision_resnet_state, write_pickle)

from fewshot_det.checkpoint import group_keys, load_weights


def _body(model):
    return {k[len("backbone.body."):]: v for k, v in model.state_dict().items()
            if k.startswith("backbone.body.")}


def _assert_body_equals(model, tv_state):
    body = _body(model)
    compared = 0
    for name, value in tv_state.items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            continue
        assert torch.equal(body[name], value), name
        compared += 1
    assert compared == len(body)  # every backbone tensor came from the file


def test_torchvision_resnet_state_dict(tmp_path):
    state = torchvision_resnet_state(18)
    path = str(tmp_path / "resnet18.pth")
    torch.save(state, path)
    model = tiny_detector()
    report = load_weights(model, path)
    assert report.format == "torchvision_resnet"
    _assert_body_equals(model, state)
    assert report.unexpected == ["fc.bias", "fc.weight"]
    assert not any("num_batches_tracked" in k for k in report.missing + report.unexpected)
    text = str(report)
    assert "Loaded 100/130 model tensors from resnet18.pth (format: torchvision_resnet)" in text
    assert "  backbone.fpn.inner_blocks.{0,1,2,3}.0.{bias,weight}" in text
    assert "  roi_heads.box_predictor.cls_score.{bias,weight}" in text
    assert "In the checkpoint but unused by the model:\n  fc.{bias,weight}" in text
    # the default config is BGR (detectron2's): torchvision's RGB weights get a warning
    assert "torchvision_resnet weights expect RGB input" in report.hint
    model.pixel_mean = model.pixel_mean.flip(0)
    assert load_weights(model, path).hint == ""


@pytest.mark.parametrize("depth", [18, 50])
def test_detectron2_pkl(tmp_path, depth):
    state = torchvision_resnet_state(depth)
    path = write_pickle(tmp_path / f"R-{depth}.pkl",
                        {"model": to_detectron2_names(state), "__author__": "test"})
    model = tiny_detector(depth=depth)
    report = load_weights(model, path)
    assert report.format == "detectron2" and report.unexpected == []
    _assert_body_equals(model, state)


def test_detectron2_caffe2_names_pkl(tmp_path):
    state = torchvision_resnet_state(18)
    path = write_pickle(tmp_path / "R-18-c2.pkl", {"blobs": to_caffe2_names(state)})
    model = tiny_detector()
    report = load_weights(model, path)
    assert report.format == "detectron2_c2"
    assert report.unexpected == ["fc1000_w"]
    body = _body(model)
    torch.testing.assert_close(body["layer2.0.conv2.weight"], state["layer2.0.conv2.weight"])
    torch.testing.assert_close(body["layer3.0.downsample.1.weight"],
                               state["layer3.0.downsample.1.weight"])
    # affine batch norms: mean 0 and var 1 - eps make the frozen BN exactly w * x + b
    assert (body["layer1.1.bn2.running_mean"] == 0).all()
    scale = body["bn1.weight"] * (body["bn1.running_var"] + 1e-5).rsqrt()
    torch.testing.assert_close(scale, state["bn1.weight"])


def test_our_checkpoint_round_trip(tmp_path):
    source = tiny_detector(seed=1)
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": source.state_dict(), "iteration": 7, "extra": {"thing_classes": ["a"]}},
               path)
    model = tiny_detector(seed=2)
    report = load_weights(model, path)
    assert report.format == "fewshot_det"
    assert report.missing == [] and report.unexpected == [] and report.skipped == {}
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_predictor_with_another_class_count_is_skipped(tmp_path):
    source = tiny_detector(num_classes=3, seed=1)
    path = str(tmp_path / "base.pth")
    torch.save({"model": source.state_dict()}, path)
    model = tiny_detector(num_classes=5, seed=2)
    before = model.roi_heads.box_predictor.cls_score.weight.clone()
    report = load_weights(model, path)
    assert sorted(report.skipped) == [f"roi_heads.box_predictor.{a}.{b}" for a in
                                      ("bbox_pred", "cls_score") for b in ("bias", "weight")]
    assert "the checkpoint has 3 classes, the model 5" in str(report)
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight, before)
    assert torch.equal(model.roi_heads.box_head.fc1.weight, source.roi_heads.box_head.fc1.weight)
    assert report.missing == []


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_weights(tiny_detector(), str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights from .*garbage.pth"):
        load_weights(tiny_detector(), str(garbage))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"x": os.getcwd}}))
    with pytest.raises(ValueError, match="refusing to unpickle posix.getcwd"):
        load_weights(tiny_detector(), str(evil))
    wide = tmp_path / "wide.pth"
    torch.save({"model": tiny_detector(fpn_channels=32).state_dict()}, wide)
    with pytest.raises(ValueError, match="shapes do not match.*fpn.inner_blocks.0.0.weight"):
        load_weights(tiny_detector(fpn_channels=16), str(wide))
    unknown = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, unknown)
    with pytest.raises(ValueError, match="unrecognised weight names"):
        load_weights(tiny_detector(), str(unknown))


def test_group_keys():
    keys = ["a.b.weight", "a.b.bias", "a.c.weight", "top", "f.0.w", "f.1.w", "f.10.w",
            "g.0.1.w", "g.1.0.w"]
    assert group_keys(keys) == ["a.b.{bias,weight}", "a.c.weight", "f.{0,1,10}.w",
                                "g.*.*.w (2 modules)", "top"]
