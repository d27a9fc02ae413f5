import json

import numpy as np
import pytest

from genprune_nb.data.prepare import prepare_documents, prepare_files
from genprune_nb.data.shards import list_shards, read_shard, write_shard
from genprune_nb.tokenizer import EOT, encode

DOCS = [
    "Hello world",
    "The second document.",
    "A third one, a bit longer than the others so that it straddles a shard boundary.",
    "<|endoftext|> written as text is not the special token",
    "",
    "Last.",
]


def _stream(docs):
    return [t for d in docs for t in [EOT, *encode(d)]]


def _concat(paths):
    return [int(t) for p in paths for t in read_shard(p)]


def test_prepare_documents_splits_and_shards(tmp_path):
    summary = prepare_documents(iter(DOCS), tmp_path, "tiny", val_documents=2, shard_tokens=7, progress=False)
    val, train = list_shards(tmp_path, "tiny", "val"), list_shards(tmp_path, "tiny", "train")
    # each split is exactly its documents, each prefixed by EOT, in order
    assert _concat(val) == _stream(DOCS[:2])
    assert _concat(train) == _stream(DOCS[2:])
    # shards are full except the last of each split; the index runs on across splits (llm.c naming)
    for split in (val, train):
        sizes = [len(read_shard(p)) for p in split]
        assert all(s == 7 for s in sizes[:-1]) and 0 < sizes[-1] <= 7
    names = [p.name for p in val + train]
    assert names == [f"tiny_{'val' if i < len(val) else 'train'}_{i:06d}.bin" for i in range(len(names))]
    # counts add up
    assert summary["documents"] == {"val": 2, "small": 0, "train": 4}
    assert summary["tokens"] == {"val": len(_stream(DOCS[:2])), "small": 0, "train": len(_stream(DOCS[2:]))}
    assert summary["files"] == {"val": names[: len(val)], "small": [], "train": names[len(val) :]}
    assert _concat(val + train).count(EOT) == len(DOCS)
    meta = json.loads((tmp_path / "tiny_meta.json").read_text())
    assert meta["tokens"] == summary["tokens"] and meta["files"] == summary["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + ["tiny_meta.json"])  # nothing else left


def test_overwrite(tmp_path):
    prepare_documents(DOCS, tmp_path, "t", val_documents=1, shard_tokens=5, progress=False)
    n_before = len(list_shards(tmp_path, "t", "train"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_documents(DOCS, tmp_path, "t", progress=False)
    summary = prepare_documents(DOCS, tmp_path, "t", val_documents=1, shard_tokens=1000, progress=False,
                                overwrite=True)
    train = list_shards(tmp_path, "t", "train")
    assert n_before > 1 and [p.name for p in train] == ["t_train_000001.bin"]  # stale shards removed
    assert _concat(train) == _stream(DOCS[1:]) and summary["tokens"]["train"] == len(_stream(DOCS[1:]))


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="no documents"):
        prepare_documents([], tmp_path, "e", progress=False)
    with pytest.raises(TypeError, match="document 1 is bytes"):
        prepare_documents(["ok", b"bytes"], tmp_path, "e", progress=False)
    with pytest.raises(ValueError, match="shard_tokens"):
        prepare_documents(["x"], tmp_path, "e", shard_tokens=0, progress=False)


def test_prepare_files_sorted_glob(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    texts = {"b.txt": "bravo", "a.txt": "alpha ünïcode", "c.txt": "charlie"}
    for name, text in texts.items():
        (src / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    summary = prepare_files(str(src / "*.txt"), out, "f", val_documents=1, progress=False)
    assert _concat(list_shards(out, "f", "val")) == _stream(["alpha ünïcode"])
    assert _concat(list_shards(out, "f", "train")) == _stream(["bravo", "charlie"])
    assert summary["source"]["files"] == [str(src / n) for n in ("a.txt", "b.txt", "c.txt")]
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        prepare_files(str(src / "nothing_here*.txt"), out, "g", progress=False)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare_files([src / "a.txt", src / "missing.txt"], out, "g", progress=False)


def test_tinyshakespeare_token_count(tmp_path, external_data_dir):
    summary = prepare_files(external_data_dir / "tinyshakespeare" / "input.txt", tmp_path, "shakes",
                            val_documents=0, progress=False)
    assert summary["tokens"] == {"val": 0, "small": 0, "train": 338_025 + 1}  # + the EOT before the document
    tokens = read_shard(list_shards(tmp_path, "shakes", "train")[0])
    assert tokens[0] == EOT and np.count_nonzero(tokens == EOT) == 1


def test_three_disjoint_splits_val_small_train(tmp_path):
    docs = [f"document {i} " * (i + 3) for i in range(7)]
    summary = prepare_documents(docs, tmp_path, "s", val_documents=2, small_documents=3, shard_tokens=10_000,
                                progress=False)
    assert summary["documents"] == {"val": 2, "small": 3, "train": 2}
    assert _concat(list_shards(tmp_path, "s", "val")) == _stream(docs[:2])
    assert _concat(list_shards(tmp_path, "s", "small")) == _stream(docs[2:5])
    assert _concat(list_shards(tmp_path, "s", "train")) == _stream(docs[5:])
    # no small split: val tokens must not leak into a shard of another split
    summary = prepare_documents(docs, tmp_path / "b", "s", val_documents=2, progress=False)
    assert _concat(list_shards(tmp_path / "b", "s", "val")) == _stream(docs[:2])


def test_fineweb_presets_fetch_exactly_their_shards(tmp_path, monkeypatch):
    """gpt2-* presets download val, S (shard 1) and L (shards 2..41) by pattern: offline via file:// URLs."""
    import dataclasses

    from genprune_nb.config import get_preset, override
    from genprune_nb.data import catalog
    from genprune_nb.data.prepare import corpora_summary, ensure_corpora

    remote = tmp_path / "remote"
    remote.mkdir()
    fineweb = catalog.get("fineweb10B")
    for name in [*fineweb.files, *fineweb.extra_files]:
        write_shard(remote / name, np.full(50, int(name[-7:-4])))
    monkeypatch.setitem(catalog.CATALOG, "fineweb10B", dataclasses.replace(fineweb, base_url=remote.as_uri() + "/"))
    preset = override(get_preset("gpt2-124m"), [f"data.tokens_dir={tmp_path / 'tokens' / 'fineweb10B'}"])
    ensure_corpora(preset, progress=False)
    got = sorted(p.name for p in (tmp_path / "tokens" / "fineweb10B").glob("*.bin"))
    assert got == [f"fineweb_train_{i:06d}.bin" for i in range(1, 42)] + ["fineweb_val_000000.bin"]
    summary = corpora_summary(preset).set_index("corpus")
    assert summary.loc["small", "files"] == 1 and summary.loc["large", "files"] == 40
    assert summary.loc["large", "first_file"] == "fineweb_train_000002.bin"
