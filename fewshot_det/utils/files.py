"""Files: atomic writes, what kind of model file a path holds, output paths checked early.

Atomic writes: a reader sees the old file or the new one, never a partial one. The content
goes to a uniquely named temp file in the target's folder (so the final ``os.replace``
stays on one file system and is atomic), is flushed and fsync'ed, then renamed over the
target. Runs that share a folder (seeds in parallel, a benchmark next to the tool) each
write their own temp file.

``file_kind`` tells a checkpoint from an exported model by the bytes, not the extension,
so that each loader can say "this is the other kind of file" instead of failing inside
``torch.load`` or onnxruntime. ``check_output_file`` / ``check_output_folder`` refuse an
output location that cannot be written before any work is done. No torch here.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from typing import BinaryIO, Callable

__all__ = ["atomic_write_bytes", "atomic_write_text", "file_kind", "KIND_NAMES",
           "check_output_file", "check_output_folder"]

# What ``file_kind`` returns, in words for messages ("x.onnx is an ONNX model").
KIND_NAMES = {
    "onnx": "an ONNX model",
    "torchscript": "a TorchScript model",
    "torch_checkpoint": "a PyTorch checkpoint",
    "pickle": "a pickle file (a PyTorch checkpoint or detectron2 weights)",
    "zip": "a zip archive",
    "json": "a JSON file",
    "empty": "an empty file",
    "unknown": "a file of unknown content",
}
# Field tags that may follow ONNX ModelProto's first field (ir_version, tag 0x08):
# producer_name, producer_version, domain, model_version, doc_string, graph, opset_import,
# metadata_props.
_ONNX_SECOND_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}


def atomic_write_bytes(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temp file beside ``path`` and rename it over ``path``.

    Args:
        path: target file; its folder is created when missing.
        write: writes the whole content into the binary file object it is given.

    Raises:
        Whatever ``write`` or the file system raises; the temp file is removed and
        ``path`` is left as it was.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    data = text.encode(encoding)
    atomic_write_bytes(path, lambda f: f.write(data))


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; not possible on every platform, harmless to skip.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_kind(path: str) -> str:
    """The kind of model file at ``path``, from its content (a key of ``KIND_NAMES``).

    * "onnx": an ONNX ModelProto (protobuf: field 1, ir_version, first);
    * "torchscript": a zip archive holding ``code/`` (``torch.jit.save``);
    * "torch_checkpoint": a zip archive holding ``data.pkl`` only (``torch.save``);
    * "pickle": a pickle (``torch.save`` before PyTorch 1.6, detectron2 ``.pkl``);
    * "json": a JSON object (a support file, a config or results file);
    * "zip", "empty" or "unknown" otherwise.

    Raises:
        FileNotFoundError: no such file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        return "torch_checkpoint" if any(n.endswith("data.pkl") for n in names) else "zip"
    if head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode: pickle protocol 2..5
        return "pickle"
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] < 0x80 \
            and head[2] in _ONNX_SECOND_TAGS:
        return "onnx"
    if head.lstrip().startswith(b"{"):
        return "json"
    return "unknown"


def check_output_folder(folder: str, what: str) -> None:
    """Create ``folder`` when missing and make sure a file can be written in it.

    Args:
        what: how the user named it, for the messages (e.g. "--output vis/").
    Raises:
        ValueError: a part of the path is a file, or the folder is not writable.
    """
    folder = folder or "."
    blocker = _file_on_the_way(os.path.abspath(folder))
    if blocker:
        raise ValueError(f"{what}: {blocker} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write_test.")
    except OSError as e:
        raise ValueError(f"{what}: cannot write in {folder} ({e.strerror or e})") from e
    os.close(fd)
    os.remove(probe)


def check_output_file(path: str, what: str) -> None:
    """``path`` can be written as a file: not a folder, its folder created and writable.

    Raises:
        ValueError: naming ``what`` and the offending path.
    """
    if os.path.isdir(path):
        raise ValueError(f"{what}: {path} is a folder; give a file path in it")
    check_output_folder(os.path.dirname(os.path.abspath(path)), what)


def _file_on_the_way(folder: str) -> str:
    """The first existing non-folder among ``folder`` and its parents, or ""."""
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return ""
        folder = parent
    return folder if folder and not os.path.isdir(folder) else ""
