"""Auto-augment in the DALI graph (RandAugment, TrivialAugment Wide, AutoAugment), decided by each sample's uniforms.

Users bring timm's policy strings: ``rand-m9-n2-mstd0.5`` (n ops per image, magnitude m of 10 with a Gaussian
spread of mstd, each op applied with probability 0.5 as timm's `rand_augment_ops`), ``-inc1`` (the increasing
magnitude variants), ``-mmax`` (the magnitude's upper clip); ``trivial`` (TrivialAugment Wide: one op, a uniform
magnitude of 31 bins) and ``auto`` (AutoAugment's ImageNet policy: one of 25 sub-policies of two ops, each applied
with its probability at its magnitude). ``randaugment-pypi`` is the PyPI ``randaugment`` package's RandAugment(),
which ML-Decoder and ASL train with, op for op as PIL computes it (`mlic_pipe.loading.pypi_randaugment`);
``-cutoutF`` paints ML-Decoder's CutoutPIL(F) before it, and ``mldecoder`` is ``randaugment-pypi-cutout0.5``,
ML-Decoder's whole training transform after the resize.

The ops are DALI's own (`nvidia.dali.auto_aug.augmentations`, run on the GPU after 'mixed' decoding and on the CPU
otherwise), but not DALI's random choice of them: DALI draws from its pipeline's history, which a resumed or
re-sharded epoch does not share. Every decision here (which op, whether it applies, its magnitude and sign) is
computed in the graph from the sample's own uniforms, which the file source draws from (seed, epoch, row), so a
row's pixels are the same on any rank, any world size and after a resume. Each layer of ops is a `select`
(DALI conditionals) over the candidates plus `identity` for "not applied".

Departures from timm (not from the package's RandAugment), all in DALI's op suite: timm's RandAugment also has Invert and SolarizeAdd and no Identity;
DALI's suite has Identity and neither of those; translations are relative to the image (0.45 of it at full
magnitude, timm's `translate_pct`); the fill is grey 128.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mlic_pipe.errors import ConfigError

__all__ = ["AUTO_AUGMENT_EXAMPLES", "AutoAugment", "apply_auto_augment", "parse_auto_augment"]

AUTO_AUGMENT_EXAMPLES = ("rand-m9-n2-mstd0.5", "rand-m9-mstd0.5-inc1", "trivial", "auto", "mldecoder",
                         "randaugment-pypi")
_LEVEL_DENOM = 10  # timm's magnitude scale: m9 is 9 / 10 of each op's range
_RAND_BINS = 101  # RandAugment magnitudes in steps of 0.1 on timm's scale (so mstd's spread is kept)
_TRIVIAL_BINS = 31  # TrivialAugment Wide's 31 magnitude bins


@dataclass(frozen=True)
class AutoAugment:
    """A parsed policy (see the module docstring). `layers` ops are applied one after another."""

    kind: str  # "rand", "trivial", "auto" or "pypi" (the randaugment package's)
    num_ops: int = 2
    magnitude: float = 9.0
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    increasing: bool = False
    prob: float = 0.5
    cutout: float = 0.0  # "pypi": ML-Decoder's CutoutPIL factor, painted before the ops (0: none)

    @property
    def layers(self) -> int:
        return {"rand": self.num_ops, "trivial": 1, "auto": 2, "pypi": 2}[self.kind]

    @property
    def draws(self) -> int:
        """Uniforms per sample: per layer which op, whether it applies, the sign, two for a Gaussian magnitude
        (the package's policy: `pypi_randaugment.draws`)."""
        if self.kind == "pypi":
            from mlic_pipe.loading.pypi_randaugment import draws

            return draws(self.cutout)
        return 5 * self.layers

    def __str__(self) -> str:
        if self.kind == "pypi":
            return "randaugment-pypi" + (f"-cutout{self.cutout:g}" if self.cutout else "")
        if self.kind != "rand":
            return self.kind
        text = f"rand-m{self.magnitude:g}-n{self.num_ops}"
        text += f"-mstd{self.magnitude_std:g}" if self.magnitude_std else ""
        text += f"-mmax{self.magnitude_max:g}" if self.magnitude_max != _LEVEL_DENOM else ""
        text += f"-p{self.prob:g}" if self.prob != 0.5 else ""
        return text + ("-inc1" if self.increasing else "")


def parse_auto_augment(spec: str | AutoAugment | None) -> AutoAugment | None:
    """A policy from timm's string form, "trivial" or "auto" (None, "" and "none": no auto-augment)."""
    if spec is None or isinstance(spec, AutoAugment):
        return spec
    text = spec.strip().lower()
    if text in ("", "none"):
        return None
    if text in ("trivial", "trivialaugment", "ta_wide"):
        return AutoAugment("trivial")
    if text in ("auto", "autoaugment", "v0", "original"):
        return AutoAugment("auto")
    if text == "mldecoder":
        return AutoAugment("pypi", cutout=0.5)
    if text.startswith("randaugment-pypi"):
        return _parse_pypi(spec, text[len("randaugment-pypi"):])
    parts = text.split("-")
    if parts[0] != "rand":
        raise ConfigError(f"{{auto_augment}} takes timm's RandAugment strings, 'trivial' or 'auto' (e.g. "
                          f"{', '.join(AUTO_AUGMENT_EXAMPLES)}), got {spec!r}")
    values = {"m": 9.0, "n": 2, "mstd": 0.0, "mmax": 10.0, "inc": 0, "p": 0.5}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)([0-9.]+)", part)
        if match is None:
            raise ConfigError(f"{{auto_augment}}: {part!r} of {spec!r} is not one of timm's keys m, n, mstd, mmax, "
                              "inc, p followed by a number")
        values[match.group(1)] = float(match.group(2))
    policy = AutoAugment("rand", num_ops=int(values["n"]), magnitude=values["m"], magnitude_std=values["mstd"],
                         magnitude_max=values["mmax"], increasing=bool(values["inc"]), prob=values["p"])
    if not (1 <= policy.num_ops <= 8 and 0 <= policy.magnitude <= policy.magnitude_max <= _LEVEL_DENOM
            and 0 <= policy.prob <= 1 and policy.magnitude_std <= 100):
        raise ConfigError(f"{{auto_augment}} {spec!r}: n must be 1-8, 0 <= m <= mmax <= 10, 0 <= p <= 1")
    return policy


def _parse_pypi(spec: str, rest: str) -> AutoAugment:
    """``randaugment-pypi`` with an optional ``-cutoutF`` (0 < F <= 1)."""
    match = re.fullmatch(r"(?:-cutout([0-9.]+))?", rest)
    factor = float(match.group(1)) if match and match.group(1) else 0.0
    if match is None or not 0 <= factor <= 1 or (match.group(1) and factor == 0):
        raise ConfigError(f"{{auto_augment}} {spec!r}: the randaugment package's policy is 'randaugment-pypi', "
                          "optionally with ML-Decoder's Cutout before it as '-cutoutF', 0 < F <= 1 (e.g. "
                          "randaugment-pypi-cutout0.5, which 'mldecoder' names)")
    return AutoAugment("pypi", cutout=factor)


def apply_auto_augment(images, uniforms, policy: AutoAugment, image_size: int):
    """`images` (uint8 HWC, S x S, a DALI node) after the policy's layers, decided by `uniforms` (`policy.draws`).

    Needs a pipeline built with ``enable_conditionals=True``.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations, auto_augment, rand_augment, trivial_augment
    from nvidia.dali.auto_aug.core import select, signed_bin

    from mlic_pipe.loading.graph_draws import table_lookup, uniform_index

    if policy.kind == "pypi":
        return _pypi_policy(images, uniforms, policy, image_size)
    extra = dict(shape=[image_size, image_size], fill_value=128)
    for layer in range(policy.layers):
        u = [uniforms[5 * layer + k] for k in range(5)]
        if policy.kind == "auto":  # one sub-policy per sample (uniform 0), its layer-th op at its probability
            subs = auto_augment.get_image_net_policy(use_shape=True).sub_policies
            chosen = [sub[layer] if layer < len(sub) else (augmentations.identity, 0.0, 0) for sub in subs]
            ops = [aug for aug, _, _ in chosen]
            pick = uniform_index(uniforms[0], len(chosen))
            applies = u[1] < table_lookup(pick, [p for _, p, _ in chosen])
            bins = table_lookup(pick, [b or 0 for _, _, b in chosen])
            magnitude_bin, num_bins = fn.cast(bins, dtype=types.INT32), 11
        elif policy.kind == "trivial":  # identity is one of its ops; always one op, at a uniform bin
            ops = [a for a in trivial_augment.get_trivial_augment_wide_suite(use_shape=True) if a.name != "identity"]
            pick, applies = uniform_index(u[0], len(ops) + 1), u[1] < 2.0
            magnitude_bin, num_bins = uniform_index(u[3], _TRIVIAL_BINS), _TRIVIAL_BINS
        else:
            suite = rand_augment.get_rand_augment_suite if policy.increasing else \
                rand_augment.get_rand_augment_non_monotonic_suite
            ops = [a for a in suite(use_shape=True, max_translate_rel=0.45) if a.name != "identity"]
            pick, applies = uniform_index(u[0], len(ops)), u[1] < policy.prob
            level = _gaussian_level(u[3], u[4], policy)
            magnitude_bin = fn.cast(dmath.floor(level * ((_RAND_BINS - 1) / _LEVEL_DENOM) + 0.5), dtype=types.INT32)
            num_bins = _RAND_BINS
        candidates = [_current(op) for op in ops] + [_current(augmentations.identity)]  # the last: "not applied"
        skipped = 1 - fn.cast(applies, dtype=types.INT32)
        op = pick + skipped * (len(ops) - pick)
        sign = fn.cast(u[2] < 0.5, dtype=types.INT32)
        images = select(candidates, op, images, magnitude_bin=signed_bin(magnitude_bin, sign),
                        num_magnitude_bins=num_bins, **extra)
    return images


def _pypi_policy(images, uniforms, policy: AutoAugment, image_size: int):
    """The randaugment package's policy: on the CPU its compiled operator (`pil_randaugment`), else (the GPU, or
    no numba) DALI's operators (`pypi_randaugment`); the same decisions and pixels either way."""
    from mlic_pipe.loading.pypi_randaugment import pypi_rand_augment

    if images.device == "cpu":
        from mlic_pipe.loading import pil_randaugment

        augmented = pil_randaugment.pil_randaugment(images, uniforms, image_size, policy.cutout)
        if augmented is not None:
            return augmented
    return pypi_rand_augment(images, uniforms, image_size, policy.cutout)


def _equalize(data, _):
    import nvidia.dali.fn as fn

    return fn.equalize(data)


def _sharpen(data, kernel):
    import nvidia.dali.fn as fn

    return fn.filter(data, kernel)


_CURRENT_OPS = {"equalize": _equalize, "sharpness": _sharpen}


class _Unconverted:
    """An augmentation called as plain Python: DALI's AutoGraph would otherwise convert every call inside it
    (the parameter tables of every magnitude bin), which made a RandAugment graph take 5-9 s to build on this
    project's 2-core CPU. Only `select`'s split on the op index needs conversion."""

    def __init__(self, augmentation):
        from nvidia.dali.pipeline import do_not_convert

        self.name = augmentation.name
        self._call = do_not_convert(augmentation.__call__)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)


def _current(op):
    """`op` ready for `select`: unconverted (`_Unconverted`), and through DALI's current operator where DALI's
    suite calls a deprecated ``fn.experimental`` alias (equalize, filter), which warns on every graph build
    whatever filter the caller sets."""
    from nvidia.dali.auto_aug.core._augmentation import Augmentation

    replacement = _CURRENT_OPS.get(op.name)
    if replacement is not None:
        op = Augmentation(replacement, **{**op._get_config(), "name": op.name})
    return _Unconverted(op)


def _gaussian_level(u1, u2, policy: AutoAugment):
    """m + mstd * z (z by Box-Muller from two uniforms), clipped to [0, mmax]: timm's per-op magnitude."""
    import nvidia.dali.math as dmath

    if policy.magnitude_std <= 0:
        return u1 * 0.0 + policy.magnitude
    z = dmath.sqrt(-2.0 * dmath.log(1.0 - u1)) * dmath.cos(2.0 * math.pi * u2)
    return dmath.clamp(policy.magnitude + policy.magnitude_std * z, 0.0, policy.magnitude_max)
