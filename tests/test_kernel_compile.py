"""The render kernel compiles for sm_80 and sm_90 without a GPU, in every variant in use, without spills.

The interpreter runs the kernel's arithmetic on the CPU but never lowers it to PTX; this builds the
real cubins (see `mlic_pipe.kernels.compile_check` for which variants and why) and reads their
registers (cuobjdump) and spills (ptxas -v). The register table is printed at the end of the run.
"""
import os

import pytest

compile_check = pytest.importorskip("mlic_pipe.kernels.compile_check", reason="triton is not importable")

from conftest import KERNEL_RESOURCES  # noqa: E402
from mlic_pipe.kernels import CONFIGS  # noqa: E402
from mlic_pipe.mix.settings import OUT_DTYPES  # noqa: E402


@pytest.fixture(scope="module")
def compiled(request):
    for tool in ("ptxas", "cuobjdump"):
        if not os.path.isfile(compile_check._tool(tool)):
            pytest.skip(f"triton bundles no {tool} on this platform")
    results = compile_check.run_all()
    request.config.stash[KERNEL_RESOURCES] = compile_check.format_table(results)
    return results


@pytest.mark.slow  # ~50 s of compiles on 2 cores
def test_every_variant_compiles_for_sm80_and_sm90_without_register_spills(compiled):
    assert {r.arch for r in compiled} == set(compile_check.ARCHS)
    spilling = [f"sm_{r.arch} {r.variant}: {r.spill_stores} B spill stores, {r.local_bytes} B local"
                for r in compiled if r.spills]
    assert not spilling, "register spills:\n" + "\n".join(spilling)
    assert all(0 < r.registers <= 255 for r in compiled)


def test_the_matrix_covers_every_autotune_config_dtype_and_constexpr():
    names = [v.name for v in compile_check.variants()]
    for config in CONFIGS:
        block = f"{config.kwargs['BLOCK_Y']}x{config.kwargs['BLOCK_X']}w{config.num_warps} "
        for dtype in ("fp32", "fp16", "bf16"):
            assert any(n.startswith(block + f"u8->{dtype} ") for n in names), (block, dtype)
    assert len(OUT_DTYPES) == 3
    for flag in ("AREA", "ALIGN_CORNERS", "HAS_MASKS", "INDEX_64"):
        assert any(f"{flag}=1" in n for n in names) and any(f"{flag}=0" in n for n in names), flag
    assert any(" fp32->" in n for n in names)  # float (N, 3, S, S) input
    assert any("TAPS_X=4" in n or "TAPS_Y=4" in n for n in names)  # area taps of a 3-cell side


def test_area_resampling_autotunes_only_over_the_configs_that_did_not_spill():
    from mlic_pipe.kernels.fused_render import AREA_PIXELS_PER_THREAD, _prune, configs_for, pixels_per_thread

    area = configs_for(area=True)
    assert area and all(pixels_per_thread(c) <= AREA_PIXELS_PER_THREAD for c in area)
    assert _prune(CONFIGS, {}, AREA=True) == area and _prune(CONFIGS, {}, AREA=False) == CONFIGS
    assert max(pixels_per_thread(c) for c in CONFIGS) <= 8  # 16 per thread spilled on sm_80 and sm_90
