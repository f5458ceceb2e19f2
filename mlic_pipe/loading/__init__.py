"""The parts of MLICLoader: epoch order and sharding, the decode stream, output buffers, the batch type."""
