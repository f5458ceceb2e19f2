"""`MLICDataModule`: MLICLoader as a Lightning `LightningDataModule` (needs ``pip install lightning``).

Lightning runs one process per device and initializes torch.distributed before it asks for the
dataloaders, so each `MLICLoader` finds its rank and world size there: nothing is re-sampled (a
`DistributedSampler` is never inserted: the loader is not a torch DataLoader), every rank takes
the same number of steps, and skipped files are agreed across ranks. The loaders have
`state_dict` / `load_state_dict`, which Lightning saves in its checkpoints and restores.

Batches arrive on the device already and carry attributes (`Batch`), so `transfer_batch_to_device`
hands them over untouched rather than rebuilding the tuple.
"""
from __future__ import annotations

import lightning.pytorch as pl

from mlic_pipe.datasets import load
from mlic_pipe.loader import MLICLoader

__all__ = ["MLICDataModule"]


class MLICDataModule(pl.LightningDataModule):
    """Train and validation `MLICLoader`s over a dataset.

    Args:
        data: anything `mlic_pipe.datasets.load` takes ("demo", a COCO root or .json, a VOCdevkit, ...).
        batch_size, image_size, mix: as `MLICLoader` (per process).
        train_split, val_split: the splits (``val_split=None``: no validation loader).
        loader_options: further `MLICLoader` arguments for both loaders (seed, on_error, dtype, ...).
    """

    def __init__(self, data: str = "demo", batch_size: int = 32, image_size: int = 448, mix="splicemix",
                 train_split: str = "train", val_split: str | None = "val", **loader_options):
        super().__init__()
        self.data, self.batch_size, self.image_size, self.mix = data, batch_size, image_size, mix
        self.train_split, self.val_split, self.loader_options = train_split, val_split, loader_options
        self.train_index = self.val_index = None

    def setup(self, stage: str | None = None) -> None:
        self.train_index = load(self.data, split=self.train_split)
        self.val_index = load(self.data, split=self.val_split) if self.val_split else None

    def train_dataloader(self) -> MLICLoader:
        return MLICLoader(self.train_index, self.batch_size, image_size=self.image_size, mix=self.mix, train=True,
                          **self.loader_options)

    def val_dataloader(self):
        if self.val_index is None:
            return []
        return MLICLoader(self.val_index, self.batch_size, image_size=self.image_size, train=False,
                          **self.loader_options)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch  # rendered on the loader's device already; keep the Batch and its attributes
