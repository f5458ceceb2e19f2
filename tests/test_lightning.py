"""The Lightning recipe: MLICDataModule under Lightning's DDP, 2 CPU processes over gloo."""
import json
import os

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed")

from mlic_pipe.integrations.lightning import MLICDataModule  # noqa: E402


class RowRecorder(pl.LightningModule):
    """A linear head on pooled pixels that writes down the rows each rank trained on, per epoch."""

    def __init__(self, num_classes: int, out_dir: str):
        super().__init__()
        self.head = torch.nn.Linear(3, num_classes)
        self.out_dir = out_dir
        self.rows: dict[int, list] = {}

    def training_step(self, batch, batch_idx):
        images, targets = batch  # the drop-in unpacking
        rows = batch.rows[~batch.padded].tolist()
        self.rows.setdefault(self.current_epoch, []).append(rows)
        logits = self.head(images.float().mean((2, 3)))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)

    def on_train_end(self):
        with open(os.path.join(self.out_dir, f"rank{self.global_rank}.json"), "w") as handle:
            json.dump({str(k): v for k, v in self.rows.items()}, handle)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_lightning_ddp_takes_equal_steps_and_sees_every_image_once_per_epoch(demo_root, tmp_path):
    data = MLICDataModule("demo", batch_size=8, image_size=32, mix="splicemix", val_split=None, num_threads=1,
                          drop_last=False)
    model = RowRecorder(11, str(tmp_path))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in ("0", "1"):
        assert len(ranks[0][epoch]) == len(ranks[1][epoch]) == 25  # 400 images / 2 ranks / 8
        seen = sorted(row for rank in ranks for batch in rank[epoch] for row in batch)
        assert seen == list(range(400))
