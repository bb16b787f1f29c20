"""load_state: a state dict in memory gets the checks and the report load_weights gives a file."""
import pytest
import torch
from weights_fixtures import tiny_detector

from fewshot_det.checkpoint import load_state, load_weights


def _fields(report):
    return report.format, report.loaded, report.missing, report.unexpected, report.skipped


def test_load_state_reports_as_load_weights_does_for_the_same_tensors(tmp_path):
    source = tiny_detector(num_classes=3, seed=1).state_dict()
    source["extra_head.weight"] = torch.zeros(2)  # unused by the model
    del source["backbone.fpn.layer_blocks.0.0.bias"]  # missing from the checkpoint
    path = str(tmp_path / "base.pth")
    torch.save({"model": source}, path)
    from_file = tiny_detector(num_classes=5, seed=2)
    in_memory = tiny_detector(num_classes=5, seed=2)
    file_report = load_weights(from_file, path)
    report = load_state(in_memory, source, source="base.pth after class surgery")
    assert _fields(report) == _fields(file_report)
    assert report.unexpected == ["extra_head.weight"]
    assert report.missing == ["backbone.fpn.layer_blocks.0.0.bias"]
    assert "the checkpoint has 3 classes, the model 5" in str(report)
    assert str(report).startswith("Loaded ") and "from base.pth after class surgery" in str(report)
    assert str(report).splitlines()[1:] == str(file_report).splitlines()[1:]
    for name, value in from_file.state_dict().items():
        assert torch.equal(in_memory.state_dict()[name], value), name


def test_load_state_errors_name_the_source():
    wide = tiny_detector(fpn_channels=32).state_dict()
    with pytest.raises(ValueError, match="^my weights: shapes do not match.*fpn.inner_blocks"):
        load_state(tiny_detector(fpn_channels=16), wide, source="my weights")
    with pytest.raises(ValueError, match=r"^other \(fewshot_det\) shares no tensor"):
        load_state(tiny_detector(), {"encoder.weight": torch.zeros(2)}, source="other")


def test_load_state_format_decides_the_channel_order_hint():
    state = tiny_detector(seed=1).state_dict()
    model = tiny_detector(seed=2)  # BGR mean (the default config)
    assert load_state(model, state, source="s").hint == ""
    hint = load_state(model, state, source="s", format="torchvision_resnet").hint
    assert "torchvision_resnet weights expect RGB input" in hint
