"""fewshot_det.utils.files: model files told apart by content; output paths checked early."""
import os
import pickle

import pytest
import torch

from fewshot_det.utils.files import check_output_file, check_output_folder, file_kind


def _onnx_bytes():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, producer_name="pytorch").SerializeToString()


def test_kinds_come_from_the_content_not_the_extension(tmp_path):
    onnx_as_pth = tmp_path / "model.pth"
    onnx_as_pth.write_bytes(_onnx_bytes())
    assert file_kind(str(onnx_as_pth)) == "onnx"

    ts = tmp_path / "model.onnx"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(ts))
    assert file_kind(str(ts)) == "torchscript"

    ckpt = tmp_path / "model.ts"
    torch.save({"model": {"w": torch.zeros(2)}}, str(ckpt))
    assert file_kind(str(ckpt)) == "torch_checkpoint"

    legacy = tmp_path / "legacy.onnx"
    torch.save({"w": torch.zeros(2)}, str(legacy), _use_new_zipfile_serialization=False)
    assert file_kind(str(legacy)) == "pickle"

    pkl = tmp_path / "R-50.pkl"
    pkl.write_bytes(pickle.dumps({"model": {}}, protocol=2))
    assert file_kind(str(pkl)) == "pickle"

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert file_kind(str(empty)) == "empty"

    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    assert file_kind(str(text)) == "unknown"

    with pytest.raises(FileNotFoundError, match="no such file"):
        file_kind(str(tmp_path / "missing.onnx"))


def test_output_file_checks_name_the_path(tmp_path):
    a_file = tmp_path / "some_file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=f"--output: {a_file} is a file, not a folder"):
        check_output_file(str(a_file / "model.onnx"), "--output")
    with pytest.raises(ValueError, match=f"--output: {a_file} is a file, not a folder"):
        check_output_file(str(a_file / "deeper" / "model.onnx"), "--output")
    with pytest.raises(ValueError, match="is a folder; give a file path in it"):
        check_output_file(str(tmp_path), "--output")
    # a missing folder is created; nothing is left behind by the write test
    check_output_file(str(tmp_path / "new" / "model.onnx"), "--output")
    assert os.listdir(tmp_path / "new") == []


def test_read_only_folder_is_refused(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes in read-only folders: the OS error is simulated
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("fewshot_det.utils.files.tempfile.mkstemp", refuse)
    try:
        with pytest.raises(ValueError, match=f"--output: cannot write in {ro} "
                                             r"\(Permission denied\)"):
            check_output_folder(str(ro), "--output")
    finally:
        ro.chmod(0o755)


def test_a_json_file_is_named_as_such(tmp_path):
    from fewshot_det.utils.files import file_kind

    path = tmp_path / "supports.json"
    path.write_text('  {"format": "fewshot_det.supports"}\n')
    assert file_kind(str(path)) == "json"
