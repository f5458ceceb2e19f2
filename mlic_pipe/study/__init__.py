"""`mlic-pipe study`: does an augmentation help? A resumable grid of `train` runs (configs x seeds), summarized.

`grid` runs the grid (each run in its own directory; finished runs are kept, an interrupted one
resumes from its last.pt), `summary` turns the runs' logs into a mean +- std table, and `chart`
draws validation mAP per epoch per config (mean line, +-1 std band) as a PNG.
"""
from mlic_pipe.study.grid import STUDY_CONFIGS, RunLog, run_study
from mlic_pipe.study.summary import StudySummary, summarize

__all__ = ["STUDY_CONFIGS", "RunLog", "StudySummary", "run_study", "summarize"]
