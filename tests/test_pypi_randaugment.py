"""The randaugment package's RandAugment and ML-Decoder's CutoutPIL in the DALI graph, held to Pillow pixel for pixel.

The reference (`tests/randaugment_reference.py`) is the package's ops written as Pillow calls from its source.
Every op is compared at every magnitude index and both signs in both forms: the compiled CPU policy
(`pil_randaugment`) and the DALI graph a GPU runs (here on the CPU, and on CUDA where there is one); then the
loader's `mldecoder` policy, in each form, against the reference applied with the decisions recomputed from
each row's uniforms.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import randaugment_reference as reference
from mlic_pipe.datasets import load
from mlic_pipe.loader import MLICLoader
from mlic_pipe.loading import numba_operator, pil_affine, pil_equalize, pil_randaugment, pypi_randaugment
from mlic_pipe.loading.auto_augment import parse_auto_augment
from mlic_pipe.loading.order import sample_uniforms
from mlic_pipe.pipeline import AUTO_AUGMENT_STREAM

SIZE = 40


def _photos(demo_root, count=2, size=SIZE):
    return [np.asarray(Image.open(path).convert("RGB").resize((size, size)))
            for path in sorted((demo_root / "train").glob("*.jpg"))[:count]]


def _run_graph(graph, columns, device="cpu"):
    """One batch through a pipeline whose inputs are `columns` (lists of per-sample arrays); on "cuda" the images
    (the first column) move to the GPU before `graph`."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    batch = len(columns[0])

    @pipeline_def(batch_size=batch, num_threads=1, device_id=None if device == "cpu" else 0)
    def pipe():
        nodes = [fn.external_source(source=_constant(c), batch=True, layout="HWC" if c[0].ndim == 3 else None)
                 for c in columns]
        if device != "cpu":
            nodes[0] = nodes[0].gpu()
        return graph(*nodes)

    built = pipe()
    built.build()
    out = built.run()[0]
    return [np.asarray(sample) for sample in (out if device == "cpu" else out.as_cpu())]


def _constant(column):
    return lambda: column  # no parameter: DALI would pass the iteration to one


def _op_cases(photos, op):
    cases = [(index, sign, k) for index in range(1, 10) for sign in (1, -1) for k in range(len(photos))]
    centres = [((7 * i) % SIZE, (13 * i + 3) % SIZE) for i in range(len(cases))]  # (y, x) pixels
    return cases, centres


def _compare_op(op, photos, graph_op, device="cpu"):
    cases, centres = _op_cases(photos, op)
    columns = [[photos[k] for _, _, k in cases], [np.array(i, np.int32) for i, _, _ in cases],
               [np.array(float(s), np.float32) for _, s, _ in cases],
               [np.array((y + 0.5) / SIZE, np.float32) for y, _ in centres],
               [np.array((x + 0.5) / SIZE, np.float32) for _, x in centres]]
    outputs = _run_graph(graph_op, columns, device)
    for (index, sign, k), (y, x), out in zip(cases, centres, outputs):
        expected = reference.apply(Image.fromarray(photos[k]), op, index, sign, centre=(x, y))
        np.testing.assert_array_equal(out, np.asarray(expected), err_msg=f"{op} index {index} sign {sign}")


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", pypi_randaugment.OPS)
def test_each_op_at_every_magnitude_and_sign_is_pils(op, device, demo_root):
    """On CUDA the ops run on the GPU: shears and Equalize in their graph forms."""
    photos = _photos(demo_root)
    _compare_op(op, photos, lambda images, index, sign, cy, cx: pypi_randaugment.apply_op(
        images, op, index, sign, cy, cx, SIZE), device)


compiled = pytest.mark.skipif(numba_operator.IMPORT_ERROR is not None, reason="numba cannot compile here")


@compiled
@pytest.mark.parametrize("size", [SIZE, 37])
def test_each_op_of_the_compiled_policy_at_every_magnitude_and_sign_is_pils(size, demo_root):
    photos = _photos(demo_root, size=size)
    rotations = pypi_randaugment.rotation_fixed(size)
    for op_id, op in enumerate(pypi_randaugment.OPS):
        for index in range(1, 10):
            for sign in (1, -1):
                for k, photo in enumerate(photos):
                    y, x = (5 * index + k) % size, (11 * index + 3) % size
                    out = np.empty_like(photo)
                    pil_randaugment.apply_op_into(out, photo, op_id, index, float(sign), y, x,
                                                  pil_randaugment._TABLES, rotations)
                    expected = reference.apply(Image.fromarray(photo), op, index, sign, centre=(x, y))
                    np.testing.assert_array_equal(out, np.asarray(expected), err_msg=f"{op} {index} {sign}")


@pytest.mark.slow  # ~10 s (CI runs it)
def test_the_graphs_rotation_at_448_differs_from_pils_only_on_rounding_edges(demo_root):
    """DALI's float32 warp cannot hold 16.16 positions beyond 256 pixels (the module docstring): a few pixels per
    thousand may take a neighbour's value; none may differ otherwise."""
    photos = _photos(demo_root, count=1, size=448)
    columns = [[photos[0]] * 9, [np.array(i, np.int32) for i in range(1, 10)], [np.array(1.0, np.float32)] * 9,
               [np.array(0.5, np.float32)] * 9, [np.array(0.5, np.float32)] * 9]
    outputs = _run_graph(lambda images, index, sign, cy, cx: pypi_randaugment.apply_op(
        images, "rotate", index, sign, cy, cx, 448), columns)
    for index, out in zip(range(1, 10), outputs):
        expected = np.asarray(reference.apply(Image.fromarray(photos[0]), "rotate", index))
        differs = (out != expected).any(-1)
        assert differs.mean() < 0.003, (index, differs.mean())
        a0, a1, a2, a3, a4, a5 = pypi_randaugment.rotation_fixed(448)[index]
        for y, x in zip(*np.nonzero(differs)):  # PIL's source pixel, by affine_fixed's arithmetic, or one beside it
            source_x, source_y = (a2 + x * a0 + y * a1) >> 16, (a5 + x * a3 + y * a4) >> 16
            near = [photos[0][source_y + dy, source_x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    if 0 <= source_y + dy < 448 and 0 <= source_x + dx < 448] + [np.full(3, 128, np.uint8)]
            assert any((out[y, x] == value).all() for value in near), (index, y, x)


def test_magnitudes_are_the_packages_linspaces():
    for op, table in reference.RANGES.items():
        np.testing.assert_array_equal(pypi_randaugment.magnitude_table(op), table, err_msg=op)
    assert pypi_randaugment.OPS == ("invert", "cutout", "sharpness", "autocontrast", "posterize", "shear_x",
                                    "translate_x", "translate_y", "shear_y", "rotate", "equalize", "contrast",
                                    "color", "solarize", "brightness")


@compiled
def test_the_compiled_affine_transform_is_pillows_for_any_matrix():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 37, 3)).astype(np.uint8)
    out = np.empty_like(image)
    for _ in range(20):
        matrix = np.array([1, 0, 0, 0, 1, 0]) + rng.normal(0, [0.2, 0.3, 4, 0.3, 0.2, 4])
        pil_affine.affine_into(out, image, matrix, np.uint8(128))
        expected = Image.fromarray(image).transform((37, 37), Image.AFFINE, tuple(matrix), Image.BICUBIC,
                                                    fillcolor=(128, 128, 128))
        np.testing.assert_array_equal(out, np.asarray(expected))


@compiled
def test_the_compiled_equalize_is_pillows_including_its_255_cap_and_flat_channels():
    capped = np.zeros((32, 32, 3), np.uint8)  # 511 pixels below the top level: step 2, the top's table entry 256
    capped.reshape(-1, 3)[:511, 0] = np.arange(511) % 200
    capped.reshape(-1, 3)[511:, 0] = 250
    capped[..., 1] = 7  # one level: unchanged
    capped.reshape(-1, 3)[:5, 2] = 9
    images = [capped] + [np.random.default_rng(s).integers(0, 256, (33, 29, 3)).astype(np.uint8) // (s + 1)
                         for s in range(6)]
    for image in images:
        out = np.empty_like(image)
        pil_equalize.equalize_into(out, image)
        np.testing.assert_array_equal(out, np.asarray(ImageOps.equalize(Image.fromarray(image))))


def _index(u, count):
    """The graph's `uniform_index` in float32, as DALI computes it."""
    return int(np.floor(min(np.float32(u) * np.float32(count), count - 1)))


def _expected_mldecoder(pixels, u, size):
    """CutoutPIL(0.5) then the two layers, each decision recomputed from the row's uniforms as the graph makes it."""
    image = reference.cutout_pil(Image.fromarray(pixels), 0.5, (_index(u[0], size), _index(u[1], size)),
                                 [_index(v, 256) for v in u[2:5]])
    for layer in range(2):
        w = u[5 + 6 * layer:11 + 6 * layer]
        if w[1] >= 0.5:
            continue
        op = pypi_randaugment.OPS[_index(w[0], 15)]
        sign = -1 if w[2] < 0.5 else 1
        centre = (_index(w[5], size), _index(w[4], size))
        image = reference.apply(image, op, 1 + _index(w[3], 9), sign, centre=centre)
    return np.asarray(image)


@pytest.mark.parametrize("form", ["compiled", "graph", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_mldecoder_policy_is_cutout_then_two_package_ops_decided_by_each_rows_draws(form, demo_root, monkeypatch):
    """Against the reference applied to the same loader's unaugmented pixels: on the CPU the compiled policy and,
    with it made unavailable, the graph; on CUDA the graph on the GPU (decoded there too)."""
    if form == "graph":
        monkeypatch.setattr(pil_randaugment, "available", lambda: "the graph form, for this test")
    elif form == "compiled" and pil_randaugment.available() is not None:
        pytest.skip(f"the compiled policy cannot be built here: {pil_randaugment.available()}")
    device = "cuda" if form == "cuda" else "cpu"
    demo = load("demo")
    index = demo.subset(np.arange(len(demo)) < 24)
    common = dict(image_size=SIZE, device=device, mix=None, seed=5, num_threads=1, normalize=False, flip_prob=0.0)
    plain, augmented = {}, {}
    for policy, seen in ((None, plain), ("mldecoder", augmented)):
        for batch in MLICLoader(index, 8, auto_augment=policy, **common):
            for k, row in enumerate(batch.rows.tolist()):
                seen[row] = torch.round(batch.images[k] * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    policy = parse_auto_augment("mldecoder")
    rows = np.array(sorted(augmented))
    draws = sample_uniforms(5 ^ AUTO_AUGMENT_STREAM, 0, rows, policy.draws)
    assert policy.draws == 17 and len(rows) == 24
    for row, u in zip(rows, draws):
        np.testing.assert_array_equal(augmented[row], _expected_mldecoder(plain[row], u, SIZE), err_msg=str(row))
