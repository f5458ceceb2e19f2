"""`mlic-pipe train`: the reference trainer, split by stage.

Modules: `config` (TrainConfig: every option with its help and choices), `optim` (optimizers and
schedules by name), `objective` (base loss + SpliceMix-CL / SUMix), `loop` (`train_one_epoch`,
`evaluate`), `checkpoint` (atomic save, resume) and `trainer` (`train`, the stages in order).
"""
from mlic_pipe.training.config import TrainConfig
from mlic_pipe.training.loop import evaluate, train_one_epoch
from mlic_pipe.training.objective import Objective
from mlic_pipe.training.trainer import TrainResult, train

__all__ = ["Objective", "TrainConfig", "TrainResult", "evaluate", "train", "train_one_epoch"]
