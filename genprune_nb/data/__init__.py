"""Data: the catalog (where external datasets live, verified), corpus preparation (text -> token shards), the llm.c
shard format and its manifest, and the distributed token loader."""
