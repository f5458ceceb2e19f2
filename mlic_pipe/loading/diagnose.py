"""`what_is_wrong`: name, from its bytes, why an image cannot be decoded ("truncated JPEG", "not an image").

DALI's decoder reports the operator that failed ("Error in CPU operator nvidia.dali.fn.decoders.image"),
not the fault, so a skip report would otherwise read the same for a half-copied photo, an HTML error
page saved as .jpg and a GIF. The signatures are the formats' own: JPEG's SOI/EOI markers, PNG's
signature and IEND chunk, and the magic numbers of the other formats.
"""
from __future__ import annotations

__all__ = ["what_is_wrong"]

_OTHER_FORMATS = ((b"GIF87a", "a GIF"), (b"GIF89a", "a GIF"), (b"BM", "a BMP"), (b"II*\x00", "a TIFF"),
                  (b"MM\x00*", "a TIFF"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000"), (b"%PDF", "a PDF"),
                  (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip archive"))


def what_is_wrong(data: bytes) -> str:
    """What `data` (bytes the decoder refused) is, in words: the first thing to fix."""
    if not data:
        return "the file is empty (zero bytes)"
    body = data.rstrip(b"\x00\r\n\t ")  # some writers pad the end
    if data.startswith(b"\xff\xd8\xff"):
        if not body.endswith(b"\xff\xd9"):
            return f"truncated JPEG (no end-of-image marker; {len(data)} bytes: an interrupted download or copy)"
        return "corrupt JPEG (its markers are intact but the compressed data is damaged)"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if b"IEND" not in data[-16:]:
            return f"truncated PNG (no IEND chunk; {len(data)} bytes: an interrupted download or copy)"
        return "corrupt PNG (its chunks are intact but the data is damaged)"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "corrupt or unsupported WebP"
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"{name} that the decoder cannot read (damaged, or a variant it does not support)"
    head = data[:64]
    if all(32 <= byte < 127 or byte in b"\r\n\t" for byte in head):
        text = head.decode("ascii").strip().splitlines()[0][:40] if head.strip() else ""
        return f"not an image: text ({text!r}...), e.g. an error page saved under an image name"
    return f"not an image (unknown format, first bytes {data[:4].hex(' ')})"
