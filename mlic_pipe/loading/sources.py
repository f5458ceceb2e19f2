"""`source_for`: the `Source` (`mlic_pipe.loading.source`) that reads an index, by its ``source_kind``."""
from __future__ import annotations

from mlic_pipe.loading.row_source import RowSource
from mlic_pipe.loading.shard_source import ShardSource
from mlic_pipe.loading.source import Source, SourceConfig

__all__ = ["SOURCES", "source_for"]

SOURCES: dict[str, type] = {
    "files": RowSource,  # a LabelIndex: DALI's file reader
    "hf": RowSource,  # an EncodedIndex over a Hugging Face dataset: bytes from its Arrow table
    "webdataset": RowSource,  # an EncodedIndex over other people's WebDataset tars: bytes at member offsets
    "shards": ShardSource,  # our ShardIndex: DALI's WebDataset reader, labels in the tars
}


def source_for(index, config: SourceConfig) -> Source:
    """The source that reads `index` (by its ``source_kind``; a plain `LabelIndex` is "files")."""
    kind = getattr(index, "source_kind", "files")
    if kind not in SOURCES:
        raise TypeError(f"no source reads a {type(index).__name__} (source_kind {kind!r}); known: {', '.join(SOURCES)}")
    return SOURCES[kind](index, config, kind)
