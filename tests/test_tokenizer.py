import hashlib
import shutil

import pytest
import tiktoken

from genprune_nb import tokenizer as tok

TRICKY = [
    "",
    " ",
    "Hello world",
    "  two leading spaces and trailing   ",
    "tabs\tand\nnew\n\nlines\r\n",
    "I'm sure you'll say they've we're he'd",
    "numbers 1234567 3.14159 1,000,000",
    "unicode: naïve café ünïcödé — “quotes” …",
    "emoji 🤖👩‍👩‍👧 and CJK 中文字符 and Ελληνικά",
    "<|endoftext|> is plain text here",
    "zero\u200bwidth and non\u00a0breaking",
    "x" * 300,
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, external_data_dir):
    """tiktoken's own gpt2 encoding, served offline from a TIKTOKEN_CACHE_DIR holding the official file names."""
    cache = tmp_path_factory.mktemp("tiktoken_cache")
    for name in ("encoder.json", "vocab.bpe"):
        url = f"https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{name}"
        shutil.copy(external_data_dir / "gpt2_bpe" / name, cache / hashlib.sha1(url.encode()).hexdigest())
    from tiktoken_ext.openai_public import gpt2

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        return tiktoken.Encoding(**gpt2())


def test_known_ids():
    enc = tok.get_tokenizer()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(" the") == [262]
    assert tok.EOT == 50256
    assert enc.eot_token == tok.EOT
    assert enc.encode("<|endoftext|>", allowed_special="all") == [tok.EOT]
    assert enc.n_vocab == 50257
    assert enc.name == "gpt2"
    assert tok.get_tokenizer() is enc  # cached


@pytest.mark.parametrize("text", TRICKY)
def test_matches_tiktoken_gpt2(reference, text):
    ids = tok.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert tok.decode(ids) == text


def test_special_string_is_not_special():
    assert tok.EOT not in tok.encode("<|endoftext|>")


def _copy_bpe(src, dst):
    dst.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(src / name, dst / name)
    return dst


def test_directory_and_env_var(tmp_path, monkeypatch, external_data_dir):
    d = _copy_bpe(external_data_dir / "gpt2_bpe", tmp_path / "bpe")
    assert tok.get_tokenizer(d).encode_ordinary("Hello world") == [15496, 995]
    monkeypatch.setenv(tok.BPE_DIR_ENV, str(d))
    assert tok.bpe_dir() == d


@pytest.mark.parametrize("name", ["vocab.bpe", "encoder.json"])
def test_tampered_file_refused(tmp_path, monkeypatch, external_data_dir, name):
    d = _copy_bpe(external_data_dir / "gpt2_bpe", tmp_path / "bpe")
    data = bytearray((d / name).read_bytes())
    data[-2] ^= 1
    (d / name).write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    monkeypatch.setenv(tok.BPE_DIR_ENV, str(d))
    with pytest.raises(tok.TokenizerFileError) as err:
        tok.get_tokenizer()
    msg = str(err.value)
    assert str(d / name) in msg and tok.BPE_SHA256[name] in msg and actual in msg


def test_missing_file(tmp_path):
    with pytest.raises(tok.TokenizerFileError, match="vocab.bpe.*not found"):
        tok.get_tokenizer(tmp_path)
