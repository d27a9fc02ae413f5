"""The tokenizer as a choice of the preset: the model names it, shards record it, every reader checks it."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from genprune_nb.analysis.representations import features_of, sample_token_windows, validation_windows
from genprune_nb.config import ConfigError, ModelConfig, Preset, get_preset, override
from genprune_nb.data import catalog
from genprune_nb.data.loader import TokenLoader
from genprune_nb.data.manifest import shard_files
from genprune_nb.data.prepare import corpora_preview, ensure_corpora, fetch_corpora, prepare_corpora, prepare_documents
from genprune_nb.data.shards import ShardError, list_shards, read_header, read_shard, require_tokenizer, write_shard
from genprune_nb.model.features import sentence_features, token_features
from genprune_nb.model.gpt import GPT
from genprune_nb.study.released import export_released, read_config
from genprune_nb.tokenizer import get_tokenizer, padded_vocab
from genprune_nb.training import provenance
from genprune_nb.training.checkpoint import latest_checkpoint, save_checkpoint
from genprune_nb.training.loop import train

SMOKE = get_preset("smoke")
BYTES_MODEL = ["model.tokenizer=bytes", f"model.vocab_size={padded_vocab('bytes')}"]


# --- the model names its tokenizer -----------------------------------------------------------------------------------

def test_vocabulary_check_is_per_tokenizer():
    assert ModelConfig().tokenizer == "gpt2" and ModelConfig().vocab_size == 50304
    small = ModelConfig(tokenizer="bytes", vocab_size=320)
    assert small.vocab_size == padded_vocab("bytes") == 320
    ModelConfig(tokenizer="bytes", vocab_size=257)  # exactly the 257 ids fits
    with pytest.raises(ConfigError, match=r"model.vocab_size=256 is smaller than the vocabulary of "
                                          r"model.tokenizer='bytes' \(257 ids\)"):
        ModelConfig(tokenizer="bytes", vocab_size=256)
    with pytest.raises(ConfigError, match=r"model.vocab_size=320 is smaller than the vocabulary of "
                                          r"model.tokenizer='gpt2' \(50257 ids\)"):
        ModelConfig(vocab_size=320)
    with pytest.raises(ConfigError, match=r"model.tokenizer: unknown tokenizer 'bpe'; choose one of gpt2, bytes"):
        override(SMOKE, ["model.tokenizer=bpe"])
    assert override(SMOKE, BYTES_MODEL).model == dataclasses.replace(SMOKE.model, tokenizer="bytes", vocab_size=320)


def test_old_config_without_the_field_loads_as_gpt2(tmp_path):
    old = SMOKE.to_dict()
    del old["model"]["tokenizer"]  # a config.json written before tokenizers were a choice
    assert Preset.from_dict(json.loads(json.dumps(old))).model.tokenizer == "gpt2"
    save_checkpoint(tmp_path / "run", 1, model=GPT(SMOKE.model), preset=SMOKE, state={"tokens": 1})
    ckpt = latest_checkpoint(tmp_path / "run")
    before = ckpt.fingerprint()
    (ckpt.path / "config.json").write_text(json.dumps(old))
    assert ckpt.load_model().config.tokenizer == "gpt2"
    assert ckpt.fingerprint() == before  # evaluations recorded for it still match


def test_fingerprints_of_gpt2_models_are_those_before_the_field():
    fields = dataclasses.asdict(SMOKE.model)
    assert SMOKE.model.recorded_fields() == {k: v for k, v in fields.items() if k != "tokenizer"}
    assert provenance.preset_fingerprint(SMOKE)["model"] == SMOKE.model.recorded_fields()
    assert override(SMOKE, BYTES_MODEL).model.recorded_fields()["tokenizer"] == "bytes"  # recorded when it matters


# --- shards record their tokenizer, readers refuse another ------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A gpt2 shard and a bytes shard of the same text."""
    root = tmp_path_factory.mktemp("mixed")
    text = "Ünïcode text, repeated. " * 40
    gpt2, byte = root / "g_val_000000.bin", root / "b_val_000000.bin"
    write_shard(gpt2, get_tokenizer("gpt2").encode(text))
    write_shard(byte, get_tokenizer("bytes").encode(text), tokenizer="bytes")
    return gpt2, byte


def test_header_records_the_tokenizer(mixed):
    gpt2, byte = mixed
    assert read_header(gpt2).tokenizer == "gpt2" and read_header(byte).tokenizer == "bytes"
    assert np.fromfile(gpt2, dtype="<i4", count=4)[3] == 0  # what llm.c and FineWeb leave there
    assert np.fromfile(byte, dtype="<i4", count=4)[3] == 1
    data = bytearray(byte.read_bytes())
    data[12:16] = np.int32(7).tobytes()
    bad = byte.with_name("x_val_000000.bin")
    bad.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"{bad}: unknown tokenizer code 7 in header slot 3 \(known: 0 = gpt2, "
                                         r"1 = bytes\)"):
        read_header(bad)


@pytest.mark.parametrize("model, found", [("bytes", "gpt2"), ("gpt2", "bytes")])
def test_a_shard_of_another_tokenizer_is_refused(mixed, model, found):
    shard = mixed[0] if found == "gpt2" else mixed[1]
    message = rf"{shard}: shard of tokenizer '{found}', but the model's tokenizer is '{model}'"
    with pytest.raises(ShardError, match=message):
        require_tokenizer(mixed, model)
    with pytest.raises(ShardError, match=message):
        TokenLoader([shard], 2, 8, tokenizer=model)
    with pytest.raises(ShardError, match=message):
        sample_token_windows([shard], 64, 8, vocab_size=50304, tokenizer=model)
    own = mixed[1] if found == "gpt2" else mixed[0]
    assert TokenLoader([own], 2, 8, tokenizer=model).next_batch()[0].shape == (2, 8)


# --- a bytes preset end to end ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def byte_preset(tmp_path_factory):
    """Smoke with the bytes tokenizer, its corpus prepared into a folder of its own."""
    tokens = tmp_path_factory.mktemp("byte_tokens")
    preset = override(SMOKE, [*BYTES_MODEL, f"data.tokens_dir={tokens}"])
    prepare_corpora(preset, progress=False)
    return preset


def test_prepare_tokenizes_with_the_preset_tokenizer(byte_preset):
    data = byte_preset.data
    meta = json.loads((shard_files(byte_preset, "val")[0].parent / f"{data.shard_prefix}_meta.json").read_text())
    assert meta["tokenizer"] == "bytes" and meta["eot"] == 256
    first_doc = next(iter(catalog.text_files(data.corpus)))
    val = read_shard(shard_files(byte_preset, "val")[0])
    expected = [256, *open(first_doc, encoding="utf-8").read().encode("utf-8")]
    assert val[:len(expected)].tolist() == expected  # EOT, then the document's UTF-8 bytes
    shards = [f for corpus in ("val", "small", "large") for f in shard_files(byte_preset, corpus)]
    assert {read_header(f).tokenizer for f in shards} == {"bytes"}
    assert corpora_preview(byte_preset, 30)["val"] == open(first_doc, encoding="utf-8").read().encode()[:29].decode(
        "utf-8", errors="replace")


def test_a_gpt2_folder_is_not_reused_for_bytes(smoke_preset, byte_preset):
    """Naming the bytes tokenizer on a preset whose folder holds GPT-2 shards is refused, never silently trained."""
    mixed = override(smoke_preset, BYTES_MODEL)
    with pytest.raises(ShardError, match=r"english_prose_val_000000.bin: shard of tokenizer 'gpt2', but the model's "
                                         r"tokenizer is 'bytes'.*data.tokens_dir of its own"):
        ensure_corpora(mixed, progress=False)
    with pytest.raises(ShardError, match="shard of tokenizer 'bytes', but the model's tokenizer is 'gpt2'"):
        shard_files(override(byte_preset, ["model.tokenizer=gpt2", "model.vocab_size=50304"]), "large")
    ensure_corpora(byte_preset, progress=False)  # its own folder is complete: nothing to do
    with pytest.raises(ValueError, match=r"corpus 'fineweb10B' is distributed as GPT-2 token shards, but "
                                         r"model.tokenizer is 'bytes'"):
        fetch_corpora(override(get_preset("gpt2-124m"), BYTES_MODEL))


def test_prepare_documents_bytes_round_trips(tmp_path):
    docs = ["café ☕", "", "日本"]
    prepare_documents(docs, tmp_path, "u", val_documents=1, shard_tokens=4, progress=False, tokenizer="bytes")
    stream = [int(t) for split in ("val", "train") for p in list_shards(tmp_path, "u", split) for t in read_shard(p)]
    assert stream == [256, *"café ☕".encode(), 256, 256, *"日本".encode()]
    assert get_tokenizer("bytes").decode(stream).split("<|endoftext|>") == ["", *docs]


def test_bytes_model_trains_and_gives_features(byte_preset, tmp_path):
    preset = override(byte_preset, ["train.steps=6", "train.warmup_steps=1", "train.decay_steps=2",
                                    "train.val_every=3", "train.checkpoint_every=0", "train.log_every=1"])
    result = train(preset, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[0] == pytest.approx(math.log(320), abs=0.3)  # uniform over the 320 outputs at init
    assert losses[-1] < losses[0] and math.isfinite(result.final_val_loss)  # byte statistics are quickly learnt
    model = latest_checkpoint(tmp_path / "run").load_model().eval()
    assert model.config.tokenizer == "bytes" and model.lm_head.weight.shape[0] == 320

    sentences = ["Zoë ate.", "日本"]
    feats = sentence_features(model, sentences)
    with torch.no_grad():  # the last position of [EOT, bytes...], by hand
        hidden = model(torch.tensor([[256, *"日本".encode()]]), return_hidden=True)[2]
    np.testing.assert_allclose(feats.values[1], torch.cat([h[0, -1] for h in hidden]).numpy(), rtol=1e-5, atol=1e-5)
    windows = validation_windows(preset, 128)
    assert windows.max() < 257
    assert token_features(model, windows).shape[0] == 128
    with pytest.raises(ValueError, match="run uses tokenizer 'bytes' but gpt2 uses 'gpt2'"):
        features_of({"run": model, "gpt2": GPT(SMOKE.model)}, windows)


def test_an_exported_bytes_model_loads_back_as_bytes(tmp_path):
    byte_model = override(SMOKE, BYTES_MODEL).model
    config = json.loads((export_released(GPT(byte_model), tmp_path / "b") / "config.json").read_text())
    assert config["tokenizer"] == "bytes" and read_config(tmp_path / "b") == byte_model
    config = json.loads((export_released(GPT(SMOKE.model), tmp_path / "g") / "config.json").read_text())
    assert "tokenizer" not in config and read_config(tmp_path / "g").tokenizer == "gpt2"  # the authors' layout


def test_bits_per_byte_by_hand(tmp_path):
    from genprune_nb.data.shards import bytes_per_token
    from genprune_nb.stats import bits_per_byte

    # bytes: targets a, b, EOT, c of [EOT, a, b, EOT, c, d]: 3 bytes of text in 4 predicted tokens
    byte = get_tokenizer("bytes")
    path = tmp_path / "bytes.bin"
    write_shard(path, [byte.eot, *b"ab", byte.eot, *b"cd"], tokenizer="bytes")
    assert bytes_per_token([path], "bytes", 4) == 0.75
    # gpt2: "Hello" and " world" are one token each (5 and 6 bytes); the stream runs on into a second shard
    gpt2 = get_tokenizer("gpt2")
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    write_shard(first, [gpt2.eot, *gpt2.encode("Hello")])
    write_shard(second, gpt2.encode(" world") + [gpt2.eot])
    assert bytes_per_token([first, second], "gpt2", 2) == 5.5
    with pytest.raises(ValueError, match="fewer than"):
        bytes_per_token([first, second], "gpt2", 4)  # 4 tokens in all: 3 targets
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_byte(np.array([2.0, 4.0]), 0.5) == pytest.approx(np.array([2.0, 4.0]) / (0.5 * math.log(2)))
