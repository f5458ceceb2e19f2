"""`MLICLoader`: DALI -> zero-copy -> render -> `Batch`, a drop-in for a PyTorch DataLoader.

One training step: the source's epoch reader hands over a uint8 NHWC batch in DALI's own buffer
(DLPack, no copy; on the GPU the exchange orders torch's stream after DALI's); the mixer draws a plan
on the host; `render` (the Triton kernel on CUDA, the compiled renderer on the CPU) writes the
normalized, mixed batch into one of two reused `OutputBuffers`; the source gives the multi-hot
targets on the device (gathered by row from a table, or unpacked from the bits that came with the
samples), mixed with the same plan.

The parts, each testable alone: the source (`mlic_pipe.loading.source`: one per kind of dataset,
picked by `mlic_pipe.loading.sources.source_for`; the loader holds no branch on the kind),
`mlic_pipe.loading.order` (which rows each rank reads: equal counts on every rank, padding and
skips marked), `mlic_pipe.loading.stream` (the DALI decode stream and its failure recovery),
`mlic_pipe.loading.buffers` and the mixing step here.

Distribution and resume. Every rank yields `len(loader)` batches in every epoch, skips included;
a file found undecodable on any rank is agreed on every rank at the epoch's end and left out of
every later epoch. `state_dict()` / `load_state_dict()` (the torchdata StatefulDataLoader
convention) resume mid-epoch: bitwise on the same world size (rows, plans and pixels: crops and
flips come from (seed, epoch, row), plans from (seed, epoch, rank, batch)), and on another world
size from the list of every rank's state, delivering exactly the rows not yet delivered.

Buffers: a batch's images stay valid until two batches later; ``.clone()`` them to keep them.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.devices import dali_device_id, device_scope, resolve_device
from mlic_pipe.distributed import all_gather_objects, rank_and_world_size
from mlic_pipe.errors import ON_ERROR, ConfigError, MLICDataError
from mlic_pipe.loading.batch import Batch
from mlic_pipe.loading.auto_augment import AutoAugment, parse_auto_augment
from mlic_pipe.loading.buffers import OutputBuffers
from mlic_pipe.loading.crops import CROPS, CropSettings
from mlic_pipe.loading.order import sample_uniforms
from mlic_pipe.loading.resume import LoaderState
from mlic_pipe.loading.source import Read, SourceConfig
from mlic_pipe.loading.sources import source_for
from mlic_pipe.loading.stream import UndecodableFiles, as_torch
from mlic_pipe.mix import (IMAGENET_MEAN, IMAGENET_STD, MixPlan, RenderSettings, create_mixer, mix_targets,
                           plan_batch, render)
from mlic_pipe.mix.erasing import erase_plan
from mlic_pipe.mix.schedule import MixSchedule
from mlic_pipe.pipeline import DecodeSettings

__all__ = ["Batch", "MLICLoader", "STAGES", "as_torch"]

STAGES = ("dali", "plan", "render", "targets")
StageHook = Callable[[str, float], None]  # (stage name, its start from time.perf_counter)


class MLICLoader:
    """`Batch`es that unpack as ``(images, targets)`` (or ``(images, targets, plan)``) for a training loop.

    Args:
        index: the dataset (`mlic_pipe.datasets.load` and friends).
        batch_size: images read per step, B. A mixer may append M mixed images (SpliceMix: B // 4).
        image_size: S, the side of the square images.
        train: random crop + flip and shuffling (True) or a plain resize in order (False).
        mix: a `Mixer`, a registered name ("splicemix", "cutmix", "fmix", "mixup", "none") or None; or several
            (a list, or names joined by commas) chosen per batch with ``mix_weights``. ``mix_prob``: the chance a
            batch is mixed at all; ``mix_off_epoch``: no mixing from that epoch on (`mlic_pipe.mix.MixSchedule`).
        device: "auto" (CUDA when present), "cpu" or "cuda[:N]": where decoding (GPU: DALI 'mixed'),
            rendering and the returned tensors live.
        num_threads: DALI CPU threads (default: the CPU count, at most 8).
        render_threads: threads the CPU render and plan use (default: torch's thread count, as the model's ops).
            They run at normal priority, DALI's decode threads below it, so while a batch renders the decode of
            the next ones yields the cores, and takes them back when the render is done: the step waits on the
            render for less time and the cores stay busy. Plain threads (`mlic_pipe.mix.host_threads`): numba's
            OpenMP threads spun between batches on the cores the decode needed, so an earlier default of one
            render thread on 2 cores was faster than two of those; with plain ones, two measured on 2 cores at
            S=448: augmentation 17-20% of a step instead of 27-29%, images/s within the runs' noise of one
            thread, the epoch 15-22% over bare DALI instead of 19-27%; at S=224 13-15% instead of 16-20%, and
            more images/s (benchmarks/results/2026-12-07-cpu-render-plain-threads-before-after.md). The plan's
            torch ops (SaliencyMix's gathers, FMix's conversions) run on as many of torch's threads, restored
            after. Ignored on CUDA.
        seed: with the epoch, rank and row, fixes the order, crops, flips and plans.
        shuffle, drop_last: default to `train`. ``drop_last=False`` pads the last round by wrapping
            around (as DistributedSampler), marking the repeats in ``batch.padded``.
        dtype: float32, float16 or bfloat16 images. channels_last: that memory format.
        mean, std: normalization in the [0, 1] scale (ImageNet's by default).
        return_plan: unpack as ``(images, targets, plan)``; every batch carries ``.plan`` anyway.
        rank, world_size: default to torch.distributed's when it is initialized, else 0 and 1.
        on_error: "raise" (an undecodable image raises `MLICDataError` naming it) or "skip"
            (it is replaced for this epoch, counted in `skipped`, reported with a warning, agreed
            across ranks and left out of later epochs).
        crop: "random" (default when training), "multiscale", "squash" (default otherwise) or "center"; the
            random crop's ``scale`` / ``ratio``, the centre crop's ``crop_pct`` (`mlic_pipe.loading.crops`), or a
            `CropSettings` (then those three are not given).
        normalize: False hands over images in [0, 1] (the mean and std are not applied), for models trained so
            (ML-Decoder, ASL).
        prefetch, hw_decoder_load, flip_prob: DALI settings (see `mlic_pipe.pipeline.DecodeSettings`).
        resample, align_corners: how spliced cells are downsampled (see `mlic_pipe.mix.RenderSettings`).
        label_rule: how mask mixes combine labels ("union" or "area"; see `mix_targets`).
        auto_augment: timm's RandAugment string ("rand-m9-n2-mstd0.5", "-inc1"), "trivial" or "auto": ops run in
            the DALI graph after the flip (training only), decided by the row's (seed, epoch, row) draws
            (`mlic_pipe.loading.auto_augment`).
        erase: Cutout / RandomErasing (`mlic_pipe.mix.erasing`), or a list of them: boxes painted over each output
            by the render in the same pass; a regular output's boxes are a function of (seed, epoch, row).
    """

    def __init__(self, index: LabelIndex, batch_size: int, *, image_size: int = 448, train: bool = True,
                 mix=None, device="auto", num_threads: int | None = None, seed: int = 0,
                 shuffle: bool | None = None, drop_last: bool | None = None, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, return_plan: bool = False, rank: int | None = None,
                 world_size: int | None = None, on_error: str = "raise", prefetch: int = 2,
                 hw_decoder_load: float = 0.65, crop: str | CropSettings | None = None,
                 scale: tuple[float, float] = (0.7, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 crop_pct: float = 0.875, normalize: bool = True, flip_prob: float = 0.5,
                 resample: str = "bilinear", align_corners: bool = True, label_rule: str = "union", erase=None,
                 mix_weights: Sequence[float] | None = None, mix_prob: float = 1.0, mix_off_epoch: int | None = None,
                 auto_augment: str | AutoAugment | None = None, render_threads: int | None = None):
        _check_arguments(index, batch_size, image_size, on_error)
        self.index, self.batch_size, self.image_size = index, int(batch_size), int(image_size)
        self.train, self.seed, self.on_error = bool(train), int(seed), on_error
        self.mixer = _mixer(mix, mix_weights, mix_prob, mix_off_epoch)
        self.erasers = tuple(_erasers(erase))
        self.device = resolve_device(device)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.return_plan, self.label_rule = bool(return_plan), label_rule
        self.rank, self.world_size = rank_and_world_size(rank, world_size)
        if not normalize:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.render_settings = RenderSettings(mean=mean, std=std, out_dtype=dtype, resample=resample,
                                              align_corners=align_corners, channels_last=channels_last)
        threads = num_threads if num_threads is not None else min(os.cpu_count() or 1, 8)
        self.render_threads = _render_threads(render_threads)
        crop = _crop_settings(crop, self.train, scale, ratio, crop_pct)
        self.settings = DecodeSettings(image_size=self.image_size, train=self.train, crop=crop, flip_prob=flip_prob,
                                       auto_augment=parse_auto_augment(auto_augment),
                                       num_threads=int(threads), prefetch=int(prefetch),
                                       hw_decoder_load=hw_decoder_load)
        self.settings.validate()
        _check_memory(self.batch_size, self.image_size, self.render_settings, self.settings.prefetch, self.device)
        self.epoch = 0
        self.stage_hook: StageHook | None = None  # called (stage, start) after each stage; see profile
        self._agreed: dict[int, str] = {}  # rows every rank leaves out (undecodable), with why
        self._found: dict[int, str] = {}  # rows this rank found undecodable in the current epoch
        self._delivered = 0  # batches of the current epoch delivered (for state_dict)
        self._unsettled = False  # an epoch ended without its skips agreed (iteration stopped early)
        self.source = source_for(index, SourceConfig(self.batch_size, self.settings, dali_device_id(self.device),
                                                     self.seed, self.shuffle, self.drop_last, self.rank,
                                                     self.world_size))
        self._buffers = OutputBuffers(self.render_settings, self.image_size, self.device)
        self._check_mixer()

    # ----------------------------------------------------------------------------------------- order

    @property
    def source_kind(self) -> str:
        """What the loader reads: its source's kind (`mlic_pipe.loading.sources.SOURCES`); saved in states."""
        return self.source.kind

    @property
    def skipped(self) -> dict[str, str]:
        """Every file skipped so far (agreed across ranks, and found by this rank this epoch): path -> why."""
        return {self.source.name(row): reason for row, reason in self._bad_rows().items()}

    def _bad_rows(self) -> dict[int, str]:
        """Rows known to be undecodable: agreed across ranks, and found by this rank this epoch."""
        return {**self._agreed, **self._found}

    def _check_mixer(self) -> None:
        """Fail now, not at step 1, if the mixer cannot work with this batch and image size."""
        blank = torch.zeros((self.batch_size, self.image_size, self.image_size, 3), dtype=torch.uint8)
        for mixer in getattr(self.mixer, "mixers", [] if self.mixer is None else [self.mixer]):
            try:
                plan = plan_batch(mixer, blank, self.image_size, np.random.default_rng(self.seed), device="cpu")
                plan.validate(self.batch_size, self.image_size)
            except ValueError as error:  # a user's choice of sizes, not a bug: a ConfigError naming the options
                raise ConfigError(f"{{mix}} {getattr(mixer, 'name', type(mixer).__name__)} cannot run on batches "
                                  f"of {{batch_size:{self.batch_size}}} at {{image_size:{self.image_size}}}: "
                                  f"{error}") from None

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (as DistributedSampler.set_epoch); iterating advances it."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self._delivered = self.source.set_epoch(int(epoch))  # a resume of another epoch is dropped
        self.epoch = int(epoch)

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """The dataset rows this rank reads in `epoch`, in order (padding included); TypeError for shards."""
        return self.source.epoch_rows(epoch, self._agreed)

    def __len__(self) -> int:
        """Batches this rank delivers in the coming epoch (counting those delivered before a resume)."""
        return self.source.steps(self.epoch, self._agreed)

    # ------------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[Batch]:
        if self._unsettled:  # the last epoch was left early: agree its skips now, on every rank alike
            self._agree_skips()
        epoch = self.epoch
        reader = self.source.open(epoch, self._agreed, self._found)
        self._delivered, self._unsettled = reader.start, True
        while not reader.done():
            self._buffers.wait_consumed()  # DALI may reuse the buffer the last render read
            try:
                with self._stage("dali"), device_scope(self.device):
                    read = reader.next()
            except UndecodableFiles as failure:
                self._skip(failure.bad)
                reader.skip(dict(self._found))
                continue
            with device_scope(self.device):  # launches, streams and the buffer's event on the loader's GPU
                batch = self._assemble(read, epoch, self._delivered)
            self._delivered += 1
            yield batch
        self.source.finish()
        self._agree_skips()
        self.epoch, self._delivered = epoch + 1, 0

    def _skip(self, bad: dict[int, str]) -> None:
        """Raise for the first bad file, or record them all (skipped this epoch, reported)."""
        if self.on_error == "raise":
            row, reason = next(iter(bad.items()))
            raise MLICDataError(self.source.name(row), reason,
                                "remove or replace the file, or pass {on_error:skip} to skip bad images")
        for row, reason in bad.items():
            self._found[row] = reason
            warnings.warn(f"mlic-pipe skipped {self.source.name(row)}: {reason} ({len(self.skipped)} image(s) "
                          "skipped so far; see loader.skipped)", stacklevel=4)

    def _agree_skips(self) -> None:
        """Every rank learns every rank's skips of the epoch (a collective, at the same step on each)."""
        found = all_gather_objects(self._found) if self.world_size > 1 else [self._found]
        for rows in found:
            self._agreed.update(rows)
        self._found, self._unsettled = {}, False

    @contextlib.contextmanager
    def _stage(self, name: str):
        """A named stage: a `torch.profiler.record_function` range, and the stage hook when one is set."""
        start = time.perf_counter()
        with torch.profiler.record_function(f"mlic_pipe.{name}"):
            yield
        if self.stage_hook is not None:
            self.stage_hook(name, start)

    def _assemble(self, read: Read, epoch: int, batch_index: int) -> Batch:
        """Plan, render and targets of one decoded batch (the mixing step)."""
        images, rows = read.images, read.rows
        count = len(images)
        with self._stage("plan"), _torch_threads(None if self.device.type == "cuda" else self.render_threads):
            rng = np.random.default_rng([self.seed, epoch, self.rank, 1, batch_index])
            if hasattr(self.mixer, "set_epoch"):  # a MixSchedule: off from some epoch
                self.mixer.set_epoch(epoch)
            if self.mixer is not None and count >= self.mixer.min_batch_size:
                plan = plan_batch(self.mixer, images, self.image_size, rng, device=self.device)
            else:  # no mixer, or a last partial batch too small for the mixer's grids: delivered unmixed
                plan = MixPlan.identity(count)
            if self.erasers:
                plan = self._erase(plan, rows, rng, epoch)
            plan = plan.with_indices(rows)
        with self._stage("render"):
            result = render(images, plan, settings=self.render_settings, out=self._buffers.take(plan.num_outputs),
                            threads=self.render_threads)
            self._buffers.mark_consumed(result)
        with self._stage("targets"):
            targets, ignore = self.source.targets(read, self.device)
            targets = mix_targets(targets, plan, rule=self.label_rule)
        return Batch(result, targets, plan, rows, ignore, read.padded, batch_index, with_plan=self.return_plan)

    def _erase(self, plan: MixPlan, rows: torch.Tensor, rng: np.random.Generator, epoch: int) -> MixPlan:
        """The erasers' boxes: a regular output's drawn from (seed, epoch, row), a mixed one's from the batch's rng."""
        host = plan.cells.cpu()
        regular = np.arange(plan.num_outputs) < plan.num_regular
        source = np.asarray(rows)[host[:, 0].clamp_min(0).numpy()]

        def uniforms(columns: int) -> np.ndarray:
            drawn = rng.random((plan.num_outputs, columns))
            drawn[regular] = sample_uniforms(self.seed ^ _ERASE_STREAM, epoch, source[regular], columns)
            return drawn
        return erase_plan(plan, self.erasers, self.image_size, uniforms)

    # ---------------------------------------------------------------------------------------- resume

    def state_dict(self) -> dict:
        """Where this rank stands: small, JSON-serializable, versioned (see `LoaderState`)."""
        name = self.source.name
        return LoaderState(
            seed=self.seed, epoch=self.epoch, batches=self._delivered, rank=self.rank, world_size=self.world_size,
            batch_size=self.batch_size, drop_last=self.drop_last, shuffle=self.shuffle, num_rows=len(self.source),
            skipped=[[row, name(row), why] for row, why in sorted(self._agreed.items())],
            found=[[row, name(row), why] for row, why in sorted(self._found.items())],
            source=self.source_kind, fingerprint=self.index.fingerprint(), **self.source.save(self._delivered),
        ).to_dict()

    def load_state_dict(self, state: dict | list[dict]) -> None:
        """Continue where `state` stopped: this rank's own state, or every rank's (a list) on any world size.

        The next iteration delivers the rest of the saved epoch, without decoding what was delivered.
        """
        complete = isinstance(state, list)
        states = [LoaderState.from_dict(s) for s in (state if complete else [state])]
        first = LoaderState.check_all(states, self, complete)
        agreed = first.skipped_rows(self.index)
        self._found = self.source.resume(states, agreed)
        self.epoch, self._agreed, self._unsettled = first.epoch, agreed, False
        self._delivered = first.batches


_ERASE_STREAM = 0x45524153  # keeps the erase draws of a row apart from its crop draws (same seed, epoch, row)


def _mixer(mix, weights, prob: float, off_epoch: int | None):
    """The loader's mixer: one as given, or a `MixSchedule` over several, or with a probability or an off epoch."""
    if isinstance(mix, str) and "," in mix:
        mix = [name.strip() for name in mix.split(",")]
    mixers = [create_mixer(m) for m in mix] if isinstance(mix, (list, tuple)) else [create_mixer(mix)]
    if len(mixers) == 1 and weights is None and prob == 1 and off_epoch is None:
        return mixers[0]
    if mixers == [None]:
        return None  # "none" stays none whatever the schedule
    return MixSchedule(mixers, weights, prob, off_epoch)


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """torch's intra-op thread count set to `count` for the block (None: as it is), then restored.

    Why: the plan's torch ops take the threads given to the render (`render_threads`), no more: on a CPU the
    plan runs while DALI's threads decode the next batches, and torch's OpenMP threads spin between parallel
    regions on the cores they hold.
    """
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _render_threads(render_threads) -> int:
    """The CPU render's thread count: as given, or torch's."""
    if render_threads is None:
        return torch.get_num_threads()
    if not _positive_integer(render_threads):
        raise ConfigError(f"{{render_threads}} must be a positive integer, got {render_threads!r}")
    return int(render_threads)


def _crop_settings(crop, train: bool, scale, ratio, crop_pct) -> CropSettings:
    """The loader's crop arguments as `CropSettings` (a given instance as is)."""
    if isinstance(crop, CropSettings):
        return crop
    if crop is not None and not isinstance(crop, str):
        raise ConfigError(f"{{crop}} takes a mode name ({', '.join(CROPS)}) or a CropSettings, got {crop!r}")
    mode = crop if crop is not None else "random" if train else "squash"
    return CropSettings(mode=mode, scale=tuple(scale), ratio=tuple(ratio), crop_pct=float(crop_pct))


def _erasers(erase) -> list:
    """`erase` as a list of erasers: None, one (Cutout, RandomErasing or anything with `columns` and `boxes`), or several."""
    erasers = [] if erase is None else list(erase) if isinstance(erase, (list, tuple)) else [erase]
    for eraser in erasers:
        if not (hasattr(eraser, "columns") and callable(getattr(eraser, "boxes", None))):
            raise ConfigError(f"erase takes Cutout / RandomErasing instances (mlic_pipe.mix.erasing), got {eraser!r}")
    return erasers


def _positive_integer(value) -> bool:
    """Whether `value` is a whole number >= 1 (an int, or a float or numpy number equal to one; not a bool)."""
    return not isinstance(value, bool) and int(value) == value and value >= 1


def _check_arguments(index: LabelIndex, batch_size, image_size, on_error) -> None:
    if len(index) == 0:
        raise MLICDataError(None, "the dataset index has no images",
                            "check the annotation file and the image directory it points to")
    if not _positive_integer(batch_size):
        raise ConfigError(f"{{batch_size}} must be a positive integer, got {batch_size!r}")
    if not _positive_integer(image_size):
        raise ConfigError(f"{{image_size}} must be a positive integer, got {image_size!r}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"{{on_error}} must be one of {', '.join(ON_ERROR)}, got {on_error!r}")


def _check_memory(batch_size: int, image_size: int, settings: RenderSettings, prefetch: int,
                  device: torch.device) -> None:
    """Refuse a batch whose buffers would take over half the device's memory, before allocating any.

    Per image: the rendered output (up to 5/4 of B images, with the appended mixed ones) and the
    decoded uint8 batches DALI keeps in flight. Without this a huge S is killed by the kernel's OOM
    killer (or fails deep in DALI), which looks like a data problem.
    """
    itemsize = torch.empty((), dtype=settings.out_dtype).element_size()
    needed = batch_size * 3 * image_size * image_size * (itemsize * 5 / 4 + prefetch + 1)
    if device.type == "cuda":
        try:
            total = torch.cuda.get_device_properties(device).total_memory
        except (RuntimeError, AssertionError):  # CUDA stood in for by a test: nothing to measure
            return
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > total / 2:
        raise ConfigError(f"{{image_size:{image_size}}} with {{batch_size:{batch_size}}} needs {needed / 2 ** 30:.1f} "
                          f"GiB of batch buffers, over half of the {total / 2 ** 30:.0f} GiB of {device}: lower them")
