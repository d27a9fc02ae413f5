"""Data: ``catalog`` (where datasets live, verified), ``prepare`` (text -> token shards), ``shards`` (the llm.c
shard format) and ``loader`` (distributed sequential batches). Import the submodules directly."""
