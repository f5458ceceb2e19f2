"""`LoaderState`: where a loader stands mid-epoch, as a small versioned JSON-able dict, and how to resume.

A rank's share of an epoch is a pure function of (seed, epoch, the rows left out at the epoch's
start, world size, rank, batch size, drop_last, shuffle), so the state need not list rows: it names
the epoch, the batches delivered, the skipped files, and the files this rank found bad during the
epoch (which changed its share). Only a share that itself came from a resume on another world size
is stored explicitly (`rows`, `padded`, `offset`).

Resuming on the same world size continues each rank's share where it stopped. On another world
size, the rests of every old rank's share (from the list of all their states) are interleaved back
into their global order and dealt round-robin to the new ranks, padded by wrapping around to equal
counts: exactly the samples not yet delivered, each once, plus marked padding. The files any old rank
found bad are known to every new rank (each reads every state), so they join the skipped files.

A state decides which samples the rest of an epoch delivers, so nothing in it is taken on trust
(`from_dict`, `check_all`): the fields, their types and ranges, the kind of source and the dataset's
fingerprint are checked, and a `LoaderStateError` names the field at fault.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.errors import LoaderStateError
from mlic_pipe.loading.order import RankRows, epoch_share, interleave, shard, without_bad

__all__ = ["STATE_VERSION", "LoaderState", "reshard"]

STATE_VERSION = 2  # 2 added `source` and `fingerprint`; version 1 states still load, unchecked on those two
_V2_ONLY = ("source", "fingerprint")


@dataclass
class LoaderState:
    """The resumable state of one rank's `MLICLoader` (see the module docstring)."""

    seed: int
    epoch: int
    batches: int  # batches of `epoch` delivered
    rank: int
    world_size: int
    batch_size: int
    drop_last: bool
    shuffle: bool
    num_rows: int
    skipped: list = field(default_factory=list)  # [row, path, reason]: left out of `epoch` on every rank
    found: list = field(default_factory=list)  # [row, path, reason]: found bad by this rank during `epoch`
    rows: list | None = None  # this rank's share, when it came from a resume on another world size
    padded: list | None = None
    offset: int = 0  # batches of the epoch delivered before that share began
    checkpoint: str | None = None  # shard streams: DALI's reader state after `batches` (base64)
    source: str | None = None  # the source's kind, a key of `mlic_pipe.loading.sources.SOURCES` (None: version 1)
    fingerprint: str | None = None  # the dataset's `fingerprint()` (None: a version-1 state)
    version: int = STATE_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state) -> "LoaderState":
        """The state in `state`, every field checked; LoaderStateError naming the first one at fault."""
        if not isinstance(state, dict):
            raise LoaderStateError("(state)", f"is a {type(state).__name__}, not the dict `state_dict()` returns")
        version = state.get("version")
        if version not in (1, STATE_VERSION) or isinstance(version, bool):
            raise LoaderStateError("version", f"{version!r}: this mlic-pipe reads loader states of version 1 and "
                                   f"{STATE_VERSION}")
        names = [f.name for f in fields(cls) if version == STATE_VERSION or f.name not in _V2_ONLY]
        for name in state:
            if name not in names:
                raise LoaderStateError(name, f"is not a field of a version-{version} loader state")
        for name in names:
            if name not in state:
                raise LoaderStateError(name, "is missing")
        loaded = cls(**state)
        loaded._check_types()
        loaded._check_ranges()
        return loaded

    def _check_types(self) -> None:
        kinds = {"seed": int, "epoch": int, "batches": int, "rank": int, "world_size": int, "batch_size": int,
                 "num_rows": int, "offset": int, "version": int, "drop_last": bool, "shuffle": bool, "skipped": list,
                 "found": list, "rows": (list, type(None)), "padded": (list, type(None)),
                 "checkpoint": (str, type(None)), "source": (str, type(None)), "fingerprint": (str, type(None))}
        for name, kind in kinds.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                raise LoaderStateError(name, f"is {value!r} ({type(value).__name__}), not {wanted}")

    def _check_ranges(self) -> None:
        least = {"epoch": 0, "batches": 0, "world_size": 1, "batch_size": 1, "num_rows": 0, "offset": 0}
        for name, low in least.items():
            if getattr(self, name) < low:
                raise LoaderStateError(name, f"is {getattr(self, name)}, below {low}")
        if not 0 <= self.rank < self.world_size:
            raise LoaderStateError("rank", f"is {self.rank}, outside 0..{self.world_size - 1} (world_size "
                                   f"{self.world_size})")
        if self.offset > self.batches:
            raise LoaderStateError("offset", f"is {self.offset}, more than the {self.batches} batches delivered")
        from mlic_pipe.loading.sources import SOURCES  # (here: the sources themselves resume through this module)

        if self.version == STATE_VERSION and self.source not in SOURCES:
            raise LoaderStateError("source", f"is {self.source!r}, not one of {tuple(SOURCES)}")
        for name in ("skipped", "found"):
            for k, entry in enumerate(getattr(self, name)):
                if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], int)
                        and not isinstance(entry[0], bool) and isinstance(entry[1], str) and isinstance(entry[2], str)):
                    raise LoaderStateError(f"{name}[{k}]", f"is {entry!r}, not [row, path, reason]")
                if not 0 <= entry[0] < self.num_rows:
                    raise LoaderStateError(f"{name}[{k}]", f"row {entry[0]} is outside the dataset's 0.."
                                           f"{self.num_rows - 1}")
        if (self.rows is None) != (self.padded is None):
            raise LoaderStateError("rows" if self.rows is None else "padded", "is missing while its partner is set")
        if self.rows is not None:
            self._check_share()
        if self.checkpoint is not None:
            try:
                base64.b64decode(self.checkpoint, validate=True)
            except (binascii.Error, ValueError):
                raise LoaderStateError("checkpoint", "is not base64 text (DALI's reader state)") from None

    def _check_share(self) -> None:
        if len(self.rows) != len(self.padded):
            raise LoaderStateError("padded", f"has {len(self.padded)} entries, rows {len(self.rows)}")
        rows = np.asarray(self.rows, dtype=object)
        bad = [k for k, row in enumerate(self.rows) if not isinstance(row, int) or isinstance(row, bool)
               or not 0 <= row < self.num_rows]
        if bad:
            raise LoaderStateError(f"rows[{bad[0]}]", f"is {rows[bad[0]]!r}, not a row of the dataset's "
                                   f"0..{self.num_rows - 1}")
        bad = [k for k, flag in enumerate(self.padded) if not isinstance(flag, bool)]
        if bad:
            raise LoaderStateError(f"padded[{bad[0]}]", f"is {self.padded[bad[0]]!r}, not true or false")

    def _rows_of(self, name: str, index: LabelIndex) -> dict[int, str]:
        for k, (row, path, _) in enumerate(getattr(self, name)):
            if index.name(row) != path:
                raise LoaderStateError(f"{name}[{k}]", f"names {path} as row {row}, but the dataset has "
                                       f"{index.name(row)} there", "resume with the dataset the state was saved with")
        return {int(row): reason for row, _, reason in getattr(self, name)}

    def skipped_rows(self, index: LabelIndex) -> dict[int, str]:
        return self._rows_of("skipped", index)

    def found_rows(self, index: LabelIndex) -> dict[int, str]:
        return self._rows_of("found", index)

    def initial_share(self) -> RankRows:
        """This rank's share of the epoch before the files it found bad were taken out."""
        if self.rows is not None:
            return RankRows(np.asarray(self.rows, dtype=np.int64), np.asarray(self.padded, dtype=bool))
        return epoch_share(self.num_rows, [row for row, _, _ in self.skipped], self.seed, self.epoch, self.shuffle,
                           self.rank, self.world_size, self.batch_size, self.drop_last)

    def rest(self, index: LabelIndex) -> RankRows:
        """The rows of this rank's share not yet delivered."""
        share = without_bad(self.initial_share(), self.found_rows(index), "resume")
        return share.tail((self.batches - self.offset) * self.batch_size)

    @staticmethod
    def check_all(states: list["LoaderState"], loader, complete: bool) -> "LoaderState":
        """The first state, after checking the states belong together and fit `loader`.

        `complete`: `states` claims to be every rank's state (a list was passed), which any world size
        can resume from; otherwise it is this rank's own, which its own world size resumes.
        """
        if not states:
            raise LoaderStateError("(states)", "the list is empty: pass every rank's state")
        first = states[0]
        together = ("version", "source", "fingerprint", "seed", "epoch", "batches", "world_size", "batch_size",
                    "drop_last", "shuffle", "num_rows", "offset")
        for state in states:
            for name in together:
                if getattr(state, name) != getattr(first, name):
                    raise LoaderStateError(name, f"differs between the states ({getattr(first, name)!r} and "
                                           f"{getattr(state, name)!r}): pass the states saved together")
        ranks = sorted(state.rank for state in states)
        if (complete or first.world_size == 1) and ranks != list(range(first.world_size)):
            raise LoaderStateError("rank", f"the states are of ranks {ranks} of a world of {first.world_size}: pass "
                                   "every rank's state, once each")
        if not complete and first.world_size not in (1, loader.world_size):
            raise LoaderStateError("world_size", f"this state is one of {first.world_size} ranks'; to resume on "
                                   f"{loader.world_size} ranks, pass the list of all {first.world_size} states")
        if not complete and first.world_size == loader.world_size and first.rank != loader.rank:
            raise LoaderStateError("rank", f"this state was saved by rank {first.rank}; this loader is rank "
                                   f"{loader.rank}: pass each rank its own state, or every rank the list of all")
        _check_fits(first, loader)
        for state in states:
            _check_position(state, loader)
        return first


def _check_fits(state: LoaderState, loader) -> None:
    """The state was saved by a loader over the same source, dataset and settings as `loader`."""
    source, fingerprint = loader.source_kind, loader.index.fingerprint()
    if state.source is not None and state.source != source:
        raise LoaderStateError("source", f"the state is of a {state.source} loader; this one reads {source}")
    if state.num_rows != len(loader.index):
        raise LoaderStateError("num_rows", f"the state's dataset has {state.num_rows} rows, this one "
                               f"{len(loader.index)}", "resume with the dataset the state was saved with")
    if state.fingerprint is not None and state.fingerprint != fingerprint:
        raise LoaderStateError("fingerprint", "the state was saved with another dataset (same size, other files or "
                               "classes)", "resume with the dataset the state was saved with")
    for name in ("seed", "batch_size", "drop_last", "shuffle"):
        if getattr(state, name) != getattr(loader, name):
            raise LoaderStateError(name, f"the state was saved with {name}={getattr(state, name)!r}, this loader "
                                   f"has {getattr(loader, name)!r}", "build the loader with the saved settings")


def _check_position(state: LoaderState, loader) -> None:
    """`batches` lies inside its epoch, and a shard state mid-epoch carries DALI's reader state."""
    stream = state.source == "shards" or (state.source is None and state.checkpoint is not None)
    if stream and state.rows is None:  # a shard stream (not a rest resumed by row on another world size)
        from mlic_pipe.loading.shard_stream import shard_steps

        steps = shard_steps(state.num_rows, state.world_size, state.batch_size, state.drop_last)
        if state.batches > 0 and state.batches < steps and state.checkpoint is None:
            raise LoaderStateError("checkpoint", "is missing: a shard state mid-epoch needs DALI's reader state")
    else:
        if state.checkpoint is not None:
            raise LoaderStateError("checkpoint", "is set, but a state read by row has no DALI reader state")
        if state.found and state.skipped_rows(loader.index).keys() & {row for row, _, _ in state.found}:
            raise LoaderStateError("found", "lists a row that is already skipped")
        steps = state.offset + -(-len(state.initial_share()) // state.batch_size)
    if state.batches > steps:
        raise LoaderStateError("batches", f"is {state.batches}, but rank {state.rank}'s epoch {state.epoch} has "
                               f"{steps} batches")


def reshard(rests: list[RankRows], rank: int, world_size: int, batch_size: int) -> RankRows:
    """Rank `rank`'s part of what the saved ranks had left (`rests`, by old rank), dealt over `world_size` ranks.

    Equal counts on every new rank (padded by wrapping around, marked).
    """
    rest = interleave(rests)
    return shard(rest.rows, rank, world_size, batch_size, drop_last=False, padded=rest.padded)
