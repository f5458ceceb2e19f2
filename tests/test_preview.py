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


def test_preview_shows_the_loaders_crop_auto_augment_and_erase_boxes(demo_root, tmp_path, capsys):
    """The preview is the loader's first batch: its tiles are the loader's pixels, its captions name the erasing."""
    import torch

    from mlic_pipe.datasets import load
    from mlic_pipe.loader import MLICLoader
    from mlic_pipe.mix.erasing import Cutout

    out = tmp_path / "all.png"
    assert main(["preview", "--mix", "none", "--out", str(out), "--batch-size", "4", "--size", "48", "--crop",
                 "multiscale", "--auto-augment", "trivial", "--cutout", "0.5", "--seed", "3"]) == 0
    said = capsys.readouterr().out
    assert "crop multiscale" in said and "auto-augment trivial" in said and "cutout 0.5" in said
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    batch = next(iter(MLICLoader(load("demo"), 4, image_size=48, mix="none", device="cpu", seed=3, crop="multiscale",
                                 auto_augment="trivial", erase=[Cutout(0.5)], drop_last=True)))
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    first = ((batch.images[0] * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(sheet[6:54, 6:54] - first).max() <= 1  # tile 1 sits at the 6-pixel pad
