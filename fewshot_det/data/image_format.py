"""Image files checked by their content: the format from the magic bytes, and truncation.

The file extension says nothing reliable: a PNG saved as ``.jpg`` is common in scraped data,
and phones append metadata after a JPEG's end-of-image marker. Each check walks the
format's own structure (JPEG segments, PNG chunks, RIFF/BMP declared sizes) without
decoding pixels, so a file cut in the middle is still found cheaply.
"""
from __future__ import annotations

import struct
from typing import Optional

__all__ = ["sniff_format", "truncation_problem"]

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
# Markers without a length field: TEM, RST0..RST7 (SOI is consumed before the walk).
_STANDALONE = {0x01} | set(range(0xD0, 0xD8))


def sniff_format(head: bytes) -> Optional[str]:
    """Format name from a file's first bytes (at least 12), or None when not recognised."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _jpeg_problem(data: bytes) -> str:
    # Walk the segments from SOI; inside entropy-coded data a 0xFF byte is followed by 0x00
    # (stuffing) or an RST marker, so the first other marker ends the scan. An EOI inside an
    # APP segment (an EXIF thumbnail) is skipped with its segment, and bytes after the real
    # EOI (phone trailers) are never looked at.
    pos, size = 2, len(data)
    while pos + 1 < size:
        if data[pos] != 0xFF:
            return f"no JPEG marker at byte {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return ""
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > size:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xDA:  # start of scan: skip the entropy-coded data
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= size:
                    return "JPEG data ends before the end-of-image marker"
                nxt = data[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    pos += 2
                    continue
                break
    return "JPEG data ends before the end-of-image marker"


def _png_problem(data: bytes) -> str:
    pos, size = 8, len(data)
    while pos + 8 <= size:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IEND":
            return ""
        pos += 12 + length
    return "PNG data ends before the IEND chunk"


def _declared_size_problem(data: bytes, fmt: str) -> str:
    if fmt == "webp":
        declared = struct.unpack("<I", data[4:8])[0] + 8
    else:  # bmp
        declared = struct.unpack("<I", data[2:6])[0]
    if len(data) < declared:
        return f"{fmt.upper()} header declares {declared} bytes but the file has {len(data)}"
    return ""


def truncation_problem(path: str) -> str:
    """Why the image file at ``path`` looks cut short, or "" when it looks complete.

    JPEG, PNG, BMP and WebP are checked from their structure; other formats (TIFF, GIF)
    and unrecognised content are left to the decoder and give "".
    """
    with open(path, "rb") as f:
        data = f.read()
    fmt = sniff_format(data[:16])
    if fmt == "jpeg":
        return _jpeg_problem(data)
    if fmt == "png":
        return _png_problem(data)
    if fmt in ("webp", "bmp") and len(data) >= 12:
        return _declared_size_problem(data, fmt)
    return ""
