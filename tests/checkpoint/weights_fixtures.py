"""Weight files in foreign formats, written by the tests themselves (no downloads)."""
import pickle
import re

import torch
from torchvision.models import resnet18, resnet50

import fewshot_det
from fewshot_det.modeling import build_model


def tiny_detector(depth=18, num_classes=3, fpn_channels=16, seed=0):
    cfg = fewshot_det.get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.FPN.OUT_CHANNELS = fpn_channels
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    torch.manual_seed(seed)
    return build_model(cfg)


def torchvision_resnet_state(depth=18, seed=1):
    """A torchvision ResNet state dict with random (non-default) batch-norm statistics."""
    torch.manual_seed(seed)
    net = {18: resnet18, 50: resnet50}[depth](weights=None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net.state_dict()


def to_detectron2_names(tv_state):
    """torchvision ResNet names -> detectron2 ResNet names (the inverse of our converter)."""
    out = {}
    for name, value in tv_state.items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            continue
        new = re.sub(r"^conv1\.", "stem.conv1.", name)
        new = re.sub(r"^bn1\.", "stem.conv1.norm.", new)
        new = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m[1]) + 1}.", new)
        new = re.sub(r"\.bn(\d)\.", r".conv\1.norm.", new)
        new = new.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.",
                                                                    ".shortcut.norm.")
        out[new] = value.numpy()
    return out


def to_caffe2_names(tv_state):
    """torchvision ResNet (basic blocks) -> Detectron caffe2 names; BN as affine (s, b)."""
    out = {}
    for name, value in tv_state.items():
        m = re.match(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(weight|bias)$", name)
        d = re.match(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(weight|bias)$", name)
        if name == "conv1.weight":
            out["conv1_w"] = value
        elif name in ("bn1.weight", "bn1.bias"):
            out["res_conv1_bn_" + ("s" if name.endswith("weight") else "b")] = value
        elif m:
            base = f"res{int(m[1]) + 1}_{m[2]}_branch2{'abc'[int(m[4]) - 1]}"
            out[base + ("_w" if m[3] == "conv" else "_bn_" + "sb"[m[5] == "bias"])] = value
        elif d:
            base = f"res{int(d[1]) + 1}_{d[2]}_branch1"
            out[base + ("_w" if d[3] == "0" else "_bn_" + "sb"[d[4] == "bias"])] = value
    out["fc1000_w"] = tv_state["fc.weight"]
    out["conv1_w_momentum"] = tv_state["conv1.weight"] * 0  # optimizer state: ignored
    return {k: v.numpy() for k, v in out.items()}


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return str(path)
