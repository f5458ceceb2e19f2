"""Skip reasons say what is wrong with the bytes ("truncated JPEG", "not an image"), not which DALI operator failed.

References: images written by PIL and cut or replaced here by hand; the formats' signatures as their
specifications give them.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from mlic_pipe.loading.diagnose import what_is_wrong
from mlic_pipe.pipeline import probe_encoded


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    y, x = np.mgrid[0:48, 0:64]
    Image.fromarray(np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], -1).astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("data, expected", [
    (b"", "the file is empty (zero bytes)"),
    (_encoded("JPEG")[:300], "truncated JPEG (no end-of-image marker; 300 bytes"),
    (_encoded("PNG")[:120], "truncated PNG (no IEND chunk; 120 bytes"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "not an image: text ('<!DOCTYPE html>"),
    (b"GIF89a" + bytes(40), "a GIF that the decoder cannot read"),
    (bytes([0x13, 0x37, 0x00, 0xfe]) + bytes(60), "not an image (unknown format, first bytes 13 37 00 fe)"),
])
def test_the_decoder_refuses_these_bytes_and_the_reason_names_the_fault(data, expected):
    assert what_is_wrong(data).startswith(expected)
    reason = probe_encoded(data)  # DALI's own CPU decoder refuses each of them
    assert reason is not None and expected in reason and "nvidia.dali" not in reason


def test_a_jpeg_damaged_inside_with_its_end_marker_is_called_corrupt():
    data = bytearray(_encoded("JPEG"))
    start = data.index(b"\xff\xda")  # start of scan: damage the entropy-coded data after it
    data[start + 20:start + 200] = b"\xff\x00" * 90
    assert what_is_wrong(bytes(data)).startswith("corrupt JPEG")


def test_the_loader_reports_each_skipped_file_with_its_fault(tmp_path):
    from test_loader_scale import BAD, _loader, build_set

    build_set(tmp_path)
    loader = _loader(str(tmp_path / "labels.json"), str(tmp_path / "images"), drop_last=False, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(loader)
    reasons = {name.rsplit("/", 1)[-1]: reason for name, reason in loader.skipped.items()}
    assert sorted(reasons) == sorted(f"{i:02d}.jpg" for i in BAD)
    assert reasons["03.jpg"] == "the file is empty (zero bytes)"
    assert reasons["08.jpg"].startswith("cannot be decoded: truncated JPEG (no end-of-image marker; 200 bytes")
    assert reasons["12.jpg"].startswith("cannot be decoded: not an image: text ('not a jpeg at all'")
