import numpy as np
from PIL import Image

from mlic_pipe.cli import main
from mlic_pipe.preview import MIXED_OUTLINE


def test_preview_writes_a_grid_with_mixed_tiles_outlined(demo_root, tmp_path, capsys):
    out = tmp_path / "batch.png"
    assert main(["preview", "--mix", "splicemix", "--out", str(out), "--batch-size", "8", "--size", "64"]) == 0
    assert "wrote" in capsys.readouterr().out
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 8 regular + 2 mixed tiles in rows of 6: 2 rows; the outline colour appears only around mixed tiles
    outlined = np.all(sheet == MIXED_OUTLINE, axis=-1)
    assert outlined.any()
    first_row = outlined[: sheet.shape[0] // 2]
    assert not first_row[:, : 64 * 4].any()  # tiles 1-4 of the first row are regular


def test_preview_cutmix_and_none(demo_root, tmp_path):
    for mix in ("cutmix", "fmix", "mixup", "none"):
        assert main(["preview", "--mix", mix, "--out", str(tmp_path / f"{mix}.png"), "--batch-size", "4",
                     "--size", "48"]) == 0
        assert Image.open(tmp_path / f"{mix}.png").size[0] > 4 * 48
