"""The compiled CPU saliency maps against the tensor form (itself tested against OpenCV's in test_resize_saliency)."""
import numpy as np
import pytest
import torch
from builders import photographs

from mlic_pipe.mix import SaliencyMix, cpu_saliency
from mlic_pipe.mix.saliency import saliency_maps, saliency_maps_torch, saliency_peaks

needs_numba = pytest.mark.skipif(not cpu_saliency.AVAILABLE, reason="numba is not installed")


@needs_numba
def test_the_compiled_maps_equal_the_tensor_form_on_photographs():
    for images in [photo[None] for photo in photographs()] + [np.stack(photographs(224))]:
        images = torch.from_numpy(images)
        torch.testing.assert_close(saliency_maps(images), saliency_maps_torch(images), rtol=0, atol=0)


@needs_numba
@pytest.mark.parametrize("shape", [(3, 2, 2), (2, 2, 3), (1, 3, 2), (2, 17, 40), (1, 113, 29), (2, 250, 251)])
def test_the_compiled_maps_equal_the_tensor_form_on_noise_and_flat_images(shape):
    count, height, width = shape
    generator = torch.Generator().manual_seed(height * width)
    noise = torch.randint(0, 256, (count, height, width, 3), generator=generator, dtype=torch.uint8)
    flat = torch.full((1, height, width, 3), 77, dtype=torch.uint8)  # no contrast: the map is 0
    for images in (noise, flat, noise[:, :, :, [2, 1, 0]]):
        torch.testing.assert_close(saliency_maps(images), saliency_maps_torch(images), rtol=0, atol=0)


@needs_numba
def test_the_compiled_maps_take_the_int64_integral_of_very_large_images():
    # 255 H W >= 2^31: the integral no longer fits int32 in either form
    from PIL import Image

    image = torch.from_numpy(np.array(Image.fromarray(photographs(224)[0]).resize((2950, 2930))))[None]
    torch.testing.assert_close(saliency_maps(image), saliency_maps_torch(image), rtol=0, atol=0)


def test_saliency_rejects_what_is_not_a_decoded_batch():
    with pytest.raises(ValueError, match="uint8"):
        saliency_maps(torch.zeros((2, 8, 8, 3), dtype=torch.float32))
    with pytest.raises(ValueError, match="uint8"):
        saliency_maps(torch.zeros((2, 8, 8), dtype=torch.uint8))


@pytest.mark.parametrize("append", [False, True])
def test_saliencymix_takes_each_partners_own_peak(append):
    # the plan computes the maps of the partners only; each box is still centred on its own partner's peak
    batch = np.stack(photographs(224))
    images = torch.from_numpy(np.concatenate([batch, batch[:, ::-1]]).copy())
    peaks = saliency_peaks(images).numpy()
    plan = SaliencyMix(append=append, mix_ratio=0.5).plan(len(images), 224, np.random.default_rng(3), images=images)
    mixed = slice(len(images) if append else 0, None)
    box, partner = plan.box.numpy()[mixed], plan.partner.numpy()[mixed]
    assert len(partner) == (len(images) // 2 if append else len(images))
    for (y0, x0, y1, x1), row in zip(box, partner):
        y, x = peaks[row]
        assert y0 <= y < max(y1, y0 + 1) and x0 <= x < max(x1, x0 + 1)
        if 0 < y0 and y1 < 224:
            assert (y0 + y1) // 2 == y
        if 0 < x0 and x1 < 224:
            assert (x0 + x1) // 2 == x


@needs_numba
def test_maps_and_peaks_of_chosen_rows_are_those_of_the_gathered_images():
    """SaliencyMix maps its partners in place: rows (repeated, out of order) = the same images gathered first,
    on the compiled path and the torch form alike."""
    images = torch.from_numpy(np.stack(photographs(64)))
    rows = torch.tensor([3, 0, 3, len(images) - 1])
    gathered = images[rows]
    torch.testing.assert_close(saliency_maps(images, rows), saliency_maps_torch(gathered), rtol=0, atol=0)
    torch.testing.assert_close(saliency_maps(images, rows), saliency_maps(gathered), rtol=0, atol=0)
    maps = saliency_maps_torch(gathered).flatten(1)
    flat = maps.argmax(1)  # torch's first maximum, the reference for the host's numpy argmax
    assert torch.equal(saliency_peaks(images, rows=rows), torch.stack([flat // 64, flat % 64], 1))
    assert saliency_maps(images, torch.zeros(0, dtype=torch.int64)).shape == (0, 64, 64)
    with pytest.raises(ValueError, match="rows must index"):
        saliency_maps(images, torch.tensor([len(images)]))
