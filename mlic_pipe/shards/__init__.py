"""WebDataset shards for multi-hot labels: `write_shards` (``mlic-pipe shard``), `load_shards`, `verify_shards`.

See `mlic_pipe.shards.format` for what a shard holds and `mlic_pipe.loading.shard_stream` for how
`MLICLoader` reads them with DALI.
"""
from mlic_pipe.shards.format import LABEL_FORMAT, MANIFEST, pack_labels, unpack_labels
from mlic_pipe.shards.index import ShardFile, ShardIndex, load_shards
from mlic_pipe.shards.verify import verify_shards
from mlic_pipe.shards.write import write_shards

__all__ = ["LABEL_FORMAT", "MANIFEST", "ShardFile", "ShardIndex", "load_shards", "pack_labels", "unpack_labels",
           "verify_shards", "write_shards"]
