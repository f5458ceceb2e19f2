"""Compile the render kernel for real GPUs without one, and read its registers and spills.

The interpreter (``TRITON_INTERPRET=1``) checks the kernel's numbers on the CPU but never lowers it:
a change that fails to compile for a GPU, or that makes it spill registers to local memory (slow),
would only show on a GPU. `triton.compile` with a `GPUTarget` builds PTX and a cubin here; the
``cuobjdump`` bundled with Triton reports each cubin's registers and stack frame, and ``ptxas -v``
(bundled too) the bytes of spill stores and loads.

What is compiled, and why (`variants`): every autotune config x every output dtype, with the
loader's constexprs (uint8 input, bilinear with aligned corners, no dense masks, int32 offsets);
and every constexpr combination in use (uint8 / float input, dense masks or not, bilinear either
corner convention, area with each tap count the grids need at S = 224 and 448, int32 / int64
offsets) at the config with the most elements per thread, where register pressure peaks. Integer
arguments equal to 1 are compiled as constants, as Triton's launcher specializes them.

Run ``python -m mlic_pipe.kernels.compile_check`` for the table; the tests assert zero spills.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mlic_pipe.kernels.fused_render import (CONFIGS, INTERPRETED, _render_kernel, configs_for, kernel_arguments,
                                            pixels_per_thread)
from mlic_pipe.mix.masks import FMix, ResizeMix
from mlic_pipe.mix.mixer import Mixer
from mlic_pipe.mix.plan import ERASE_NOISE, ERASE_VALUE
from mlic_pipe.mix.splicemix import SpliceMix
from mlic_pipe.mix.settings import OUT_DTYPES, RenderSettings

__all__ = ["ARCHS", "Resources", "Variant", "compile_variant", "format_table", "run_all", "variants"]

ARCHS = (80, 90)  # A100, H100/H200
_TYPES = {torch.uint8: "*u8", torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16",
          torch.int32: "*i32"}
_SIZES = (224, 448)
_CONSTEXPRS = ("AREA", "ALIGN_CORNERS", "TAPS_Y", "TAPS_X", "HAS_MASKS", "INDEX_64", "HAS_RESIZED", "NUM_ERASE",
               "ERASE_NOISE")


@dataclass(frozen=True)
class Variant:
    """One compilation: block shape and warps, argument types, and the values compiled in as constants."""

    block_y: int
    block_x: int
    num_warps: int
    types: tuple[tuple[str, str], ...]  # (argument, Triton type) of every runtime argument
    constants: tuple[tuple[str, object], ...]  # (argument, value) compiled in

    @property
    def name(self) -> str:
        shown = {k: v for k, v in self.constants if k in _CONSTEXPRS}
        flags = ",".join(f"{k}={int(v)}" for k, v in shown.items())
        types = dict(self.types)
        return f"{self.block_y}x{self.block_x}w{self.num_warps} {types['src_ptr'][1:]}->{types['out_ptr'][1:]} {flags}"


@dataclass(frozen=True)
class Resources:
    """What one compiled variant uses per thread."""

    arch: int
    variant: str
    registers: int
    stack_bytes: int
    local_bytes: int
    spill_stores: int  # bytes; a spill is a register moved to local memory (slow)
    spill_loads: int

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads or self.local_bytes)


def _signature(settings: RenderSettings, mixer: Mixer, size: int, float_input: bool, index_64: bool):
    """Argument types and the launcher's constants for one real call (tensors on the CPU, never launched)."""
    images = torch.zeros((8, 3, size, size)) if float_input else torch.zeros((8, size, size, 3), dtype=torch.uint8)
    plan = mixer.plan(8, size, np.random.default_rng(0))
    out = settings.empty(plan.num_outputs, size, "cpu")
    args, flags = kernel_arguments(images, plan, settings, out, index_64=index_64)
    names = _render_kernel.arg_names[:len(args)]
    types, constants = [], dict(flags)
    for name, value in zip(names, args):
        if isinstance(value, torch.Tensor):
            types.append((name, _TYPES[value.dtype]))
        elif isinstance(value, float):
            types.append((name, "fp32"))
        elif value == 1:  # the launcher compiles an integer 1 in as a constant
            constants[name] = 1
        else:
            types.append((name, "i64" if index_64 and abs(value) > 2**31 - 1 else "i32"))
    return tuple(types), tuple(sorted(constants.items()))


def _loader_cases():
    return [dict(settings=RenderSettings(out_dtype=dtype), mixer=SpliceMix(), size=448, float_input=False,
                 index_64=False) for dtype in OUT_DTYPES]


class _Erasing:
    """A mixer's plans with two erase boxes per output (the second of noise, or not): the NUM_ERASE variants."""

    min_batch_size = 1

    def __init__(self, mixer, noise: bool = True):
        self.mixer, self.noise = mixer, noise

    def plan(self, batch_size, image_size, rng, device=None):
        plan = self.mixer.plan(batch_size, image_size, rng, device=device)
        count = plan.num_outputs
        boxes = np.tile(np.array([[0, 0, image_size // 2, image_size // 2], [1, 1, 3, 3]]), (count, 1, 1))
        kinds = [ERASE_VALUE, ERASE_NOISE if self.noise else ERASE_VALUE]
        return plan.with_erase(boxes, np.tile(kinds, (count, 1)), seeds=np.ones((count, 2)))


def _constexpr_cases():
    # every grid side SpliceMix draws (1, 2, 3 cells) sets the area taps; FMix brings the dense masks;
    # erase boxes (Cutout, random erasing) add their loop and the noise
    mixers = [SpliceMix([grid]) for grid in ("1x2", "2x3")] + [FMix(), ResizeMix()] + \
        [_Erasing(SpliceMix(["2x3"])), _Erasing(ResizeMix()), _Erasing(ResizeMix(), noise=False)]
    cases = []
    for float_input in (False, True):
        for mixer in mixers:
            for resample, align in (("bilinear", True), ("bilinear", False), ("area", True)):
                for size in _SIZES if resample == "area" else _SIZES[:1]:
                    for index_64 in (False, True):
                        cases.append(dict(settings=RenderSettings(out_dtype=torch.bfloat16, resample=resample,
                                                                  align_corners=align),
                                          mixer=mixer, size=size, float_input=float_input, index_64=index_64))
    return cases


def variants() -> list[Variant]:
    """The compilations CI checks (see the module docstring), without duplicates."""
    found: dict[tuple, Variant] = {}

    def add(config, case):
        types, constants = _signature(**case)
        block = (config.kwargs["BLOCK_Y"], config.kwargs["BLOCK_X"], config.num_warps)
        found.setdefault((block, types, constants), Variant(*block, types, constants))

    for config in CONFIGS:
        for case in _loader_cases():
            add(config, case)
    for case in _constexpr_cases():
        mixer = getattr(case["mixer"], "mixer", case["mixer"])
        allowed = configs_for(case["settings"].resample == "area", isinstance(mixer, ResizeMix),
                              isinstance(case["mixer"], _Erasing))
        add(max(allowed, key=lambda c: (pixels_per_thread(c), c.kwargs["BLOCK_Y"] * c.kwargs["BLOCK_X"])), case)
    return list(found.values())


def _tool(name: str) -> str:
    """A CUDA tool bundled with Triton's NVIDIA backend (ptxas, cuobjdump)."""
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _spills(ptx: str, arch: int) -> tuple[int, int]:
    """(spill store bytes, spill load bytes) as ptxas reports them for this PTX."""
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"  # Triton targets the arch-specific sm_90a
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        log = subprocess.run([_tool("ptxas"), "-v", "--gpu-name", gpu, source, "-o", os.path.join(folder, "k.cubin")],
                             capture_output=True, text=True, check=True)
    stores, loads = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log.stdout + log.stderr).groups()
    return int(stores), int(loads)


def compile_variant(arch: int, variant: Variant) -> Resources:
    """Compile `variant` for sm_`arch`; registers and frame from the cubin (cuobjdump), spills from ptxas."""
    if INTERPRETED:
        raise RuntimeError("the kernel was defined under TRITON_INTERPRET=1 and cannot be compiled in this process; "
                           "use run_all(), which compiles in fresh processes")
    names = _render_kernel.arg_names
    constants = dict(variant.constants, BLOCK_Y=variant.block_y, BLOCK_X=variant.block_x)
    signature = {name: "constexpr" for name in constants}
    signature.update(dict(variant.types))
    signature = {name: signature[name] for name in names}
    source = ASTSource(fn=_render_kernel, signature=signature,
                       constexprs={(names.index(name),): value for name, value in constants.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": variant.num_warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(compiled.asm["cubin"])
        handle.flush()
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", handle.name], capture_output=True,
                               text=True, check=True).stdout
    fields = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", usage))
    stores, loads = _spills(compiled.asm["ptx"], arch)
    return Resources(arch, variant.name, int(fields["REG"]), int(fields["STACK"]), int(fields["LOCAL"]), stores, loads)


def _compile_job(job: tuple[int, Variant]) -> Resources:
    return compile_variant(*job)


def run_all(workers: int | None = None) -> list[Resources]:
    """Every variant for every arch in `ARCHS`, compiled in parallel processes.

    The workers are fresh interpreters started without ``TRITON_INTERPRET`` (the test suite sets
    it when there is no GPU), so their kernel is the compilable one whatever this process runs.
    """
    jobs = [(arch, variant) for arch in ARCHS for variant in variants()]
    workers = workers or os.cpu_count() or 1
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(_compile_job, jobs))
    finally:
        if interpret is not None:
            os.environ["TRITON_INTERPRET"] = interpret


def format_table(results: list[Resources]) -> str:
    """One line per compiled variant, most registers first."""
    lines = [f"{'arch':<7}{'regs':>5}{'stack':>7}{'spill st':>10}{'spill ld':>10}  variant"]
    for r in sorted(results, key=lambda r: (r.arch, -r.registers, r.variant)):
        lines.append(f"sm_{r.arch:<4}{r.registers:>5}{r.stack_bytes:>7}{r.spill_stores:>10}{r.spill_loads:>10}  "
                     f"{r.variant}")
    return "\n".join(lines)


if __name__ == "__main__":
    table = run_all()
    print(format_table(table))
    sys.exit(1 if any(r.spills for r in table) else 0)
