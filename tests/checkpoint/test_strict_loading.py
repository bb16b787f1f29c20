"""Strict loading (inference): a checkpoint that does not fill the configured model is an
error naming both class counts or the missing tensors, and nothing is loaded; the complete
formats (ours, torchvision's and detectron2's whole detectors) load."""
import re

import pytest
import torch
from weights_fixtures import tiny_detector, write_pickle

import fewshot_det
from fewshot_det.checkpoint import load_weights
from fewshot_det.modeling import build_model


def _save(model, path):
    torch.save({"model": model.state_dict()}, str(path))
    return str(path)


def test_another_class_count_names_both_counts_and_loads_nothing(tmp_path):
    path = _save(tiny_detector(num_classes=12, seed=1), tmp_path / "x.pth")
    model = tiny_detector(num_classes=3, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as e:
        load_weights(model, path, strict=True)
    msg = str(e.value)
    assert msg.startswith(f"MODEL.WEIGHTS {path}: its classifier has 13 rows (12 classes) but "
                          f"the config builds 3 classes (MODEL.ROI_HEADS.NUM_CLASSES 3); set "
                          f"MODEL.ROI_HEADS.NUM_CLASSES 12"), msg
    assert msg.endswith("(mismatched: roi_heads.box_predictor.bbox_pred.{bias,weight}, "
                        "roi_heads.box_predictor.cls_score.{bias,weight})")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # training keeps its lenient loading: the class layer is skipped (fine-tuning)
    assert load_weights(model, path).skipped


def test_a_detector_of_another_architecture_is_not_this_configs_model(tmp_path):
    path = _save(tiny_detector(), tmp_path / "rcnn.pth")
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "YOLOGrid", "MODEL.BACKBONE.NAME",
                         "build_resnet_backbone", "MODEL.RESNETS.DEPTH", "18",
                         "MODEL.YOLO.NUM_CLASSES", "3", "MODEL.YOLO.HEAD_CONV_DIM", "16",
                         "INPUT.RESIZE_MODE", "fixed_square", "INPUT.FIXED_SIZE", "64"])
    yolo = build_model(cfg)
    lenient = load_weights(yolo, path)  # what training (and eval.py today) does: 90/99
    loaded, total = len(lenient.loaded), len(lenient.loaded) + len(lenient.missing)
    assert lenient.missing and loaded < total
    with pytest.raises(ValueError) as e:
        load_weights(build_model(cfg), path, strict=True)
    msg = str(e.value)
    assert re.match(rf"MODEL.WEIGHTS {re.escape(path)}: it fits {loaded} of {total} model "
                    rf"tensors; missing: .*head\.cls_pred\.\{{bias,weight\}}", msg), msg
    assert msg.endswith("it is not a checkpoint of this config's model "
                        "(MODEL.META_ARCHITECTURE YOLOGrid)")


def test_a_backbone_only_file_is_refused_for_inference(tmp_path):
    from weights_fixtures import torchvision_resnet_state

    path = str(tmp_path / "resnet18.pth")
    torch.save(torchvision_resnet_state(18), path)
    with pytest.raises(ValueError, match=r"fits 100 of 130 model tensors; missing: "
                                         r"backbone\.fpn\.inner_blocks"):
        load_weights(tiny_detector(), path, strict=True)


def test_our_complete_checkpoint_loads_strictly(tmp_path):
    source = tiny_detector(seed=1)
    model = tiny_detector(seed=2)
    report = load_weights(model, _save(source, tmp_path / "m.pth"), strict=True)
    assert report.missing == [] and report.skipped == {}
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())


def _to_detectron2_detector(state):
    """Our R-CNN state dict under detectron2's names and layout (background last)."""
    body = {"conv1.": "stem.conv1.", "bn1.": "stem.conv1.norm."}
    out = {}
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        new = name
        if name.startswith("backbone.body."):
            new = name[len("backbone.body."):]
            for a, b in body.items():
                if new.startswith(a):
                    new = b + new[len(a):]
            new = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m[1]) + 1}.", new)
            new = re.sub(r"\.bn(\d)\.", r".conv\1.norm.", new)
            new = new.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.",
                                                                        ".shortcut.norm.")
            new = "backbone.bottom_up." + new
        elif m := re.match(r"backbone\.fpn\.(inner|layer)_blocks\.(\d)\.0\.(.*)", name):
            new = f"backbone.fpn_{'lateral' if m[1] == 'inner' else 'output'}{int(m[2]) + 2}." \
                  + m[3]
        elif name.startswith("proposal_generator.head."):
            new = name.replace("head.cls_logits", "rpn_head.objectness_logits").replace(
                "head.bbox_pred", "rpn_head.anchor_deltas").replace("head.conv", "rpn_head.conv")
        if name.startswith("roi_heads.box_predictor.cls_score."):
            value = torch.cat([value[1:], value[:1]])
        out[new] = value.numpy()
    return out


def test_torchvision_and_detectron2_detectors_load_strictly(tmp_path):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    tv_path = str(tmp_path / "fasterrcnn_resnet50_fpn_coco.pth")
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), tv_path)
    cfg = fewshot_det.config.load_cfg("configs/torchvision/faster_rcnn_R_50_FPN.yaml")
    report = load_weights(build_model(cfg), tv_path, strict=True)
    assert report.format == "torchvision_detection" and report.missing == []

    source = tiny_detector(seed=1)
    d2_path = write_pickle(tmp_path / "model_final_d2.pkl",
                           {"model": _to_detectron2_detector(source.state_dict())})
    model = tiny_detector(seed=2)
    report = load_weights(model, d2_path, strict=True)
    assert report.format == "detectron2" and report.missing == [] and report.unexpected == []
    for name, value in source.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(model.state_dict()[name], value), name


def test_an_exported_model_given_as_weights_says_what_it_is(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "model.pth"  # the extension lies; the content decides
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match=rf"^MODEL.WEIGHTS {path} is an ONNX model, not a "
                                         r"checkpoint: run it with fewshot_det.export"):
        load_weights(tiny_detector(), str(path))
    ts = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(ts))
    with pytest.raises(ValueError, match="is a TorchScript model, not a checkpoint"):
        load_weights(tiny_detector(), str(ts))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.pth is empty \(0 bytes\)"):
        load_weights(tiny_detector(), str(empty))
