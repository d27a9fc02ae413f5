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
    assert tok.encode("Hello world") == enc.encode("Hello world") == [15496, 995]  # the ids of before tokenizers
    assert tok.encode(" the") == [262]
    assert tok.EOT == enc.eot == 50256
    assert tok.gpt2_encoding().encode("<|endoftext|>", allowed_special="all") == [tok.EOT]
    assert enc.n_vocab == tok.gpt2_encoding().n_vocab == 50257
    assert enc.name == "gpt2" and enc.shard_code == 0 and enc.padded_vocab == 50304
    assert tok.get_tokenizer() is enc is tok.get_tokenizer("gpt2")  # cached
    assert tok.decode([tok.EOT]) == "<|endoftext|>"


@pytest.mark.parametrize("text", TRICKY)
def test_matches_tiktoken_gpt2(reference, text):
    ids = tok.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert tok.get_tokenizer().encode_batch([text, text]) == [ids, ids]
    assert tok.decode(ids) == text
    spans = tok.get_tokenizer().byte_spans(ids)  # each token's bytes, end to end, are the text's
    assert b"".join(text.encode()[a:b] for a, b in spans) == text.encode()
    assert [text.encode()[a:b] for a, b in spans] == [reference.decode_single_token_bytes(t) for t in ids]


def test_special_string_is_not_special():
    assert tok.EOT not in tok.encode("<|endoftext|>")


def _copy_bpe(src, dst):
    dst.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(src / name, dst / name)
    return dst


def test_directory_and_env_var(tmp_path, monkeypatch, external_data_dir):
    d = _copy_bpe(external_data_dir / "gpt2_bpe", tmp_path / "bpe")
    assert tok.gpt2_encoding(d).encode_ordinary("Hello world") == [15496, 995]
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
        tok.encode("Hello")  # the files are read when GPT-2 first encodes
    msg = str(err.value)
    assert str(d / name) in msg and tok.BPE_SHA256[name] in msg and actual in msg


def test_missing_file(tmp_path):
    with pytest.raises(tok.TokenizerFileError, match="vocab.bpe.*not found"):
        tok.gpt2_encoding(tmp_path)


# --- the bytes tokenizer ---------------------------------------------------------------------------------------------

BYTES = tok.get_tokenizer("bytes")


@pytest.mark.parametrize("text", TRICKY + ["é", "👩‍👩‍👧", "日本語のテキスト", "\x00\x7f\u0080\uffff\U0010ffff"])
def test_bytes_round_trip_any_utf8(text):
    ids = BYTES.encode(text)
    assert ids == list(text.encode("utf-8"))  # one id per byte, the byte's value
    assert BYTES.decode(ids) == text
    assert BYTES.eot not in ids  # "<|endoftext|>" in the text is 13 ordinary bytes


def test_bytes_vocabulary_and_eot():
    assert (BYTES.name, BYTES.n_vocab, BYTES.eot, BYTES.shard_code, BYTES.padded_vocab) == ("bytes", 257, 256, 1, 320)
    assert tok.padded_vocab("bytes") == 320 and tok.padded_vocab("gpt2") == 50304
    assert BYTES.encode("") == [] and BYTES.decode([]) == ""
    assert BYTES.decode([BYTES.eot, 104, 105]) == "<|endoftext|>hi"  # EOT decodes as GPT-2's does
    assert BYTES.decode(BYTES.encode("é")[:1]) == "\ufffd"  # a character cut short is replaced, like tiktoken
    assert BYTES.encode("a\ud800b") == list("a\ufffdb".encode())  # a lone surrogate, like tiktoken
    with pytest.raises(tok.TokenizerError, match=r"token id 257 at position 1 is outside the bytes vocabulary \(0..256"):
        BYTES.decode([1, 257])


def test_bytes_spans_credit_tokens_to_words():
    regions = ["Zoë", " ate", " 寿司", " 🍣!"]  # 4, 4, 7 and 6 bytes
    ids = BYTES.encode("".join(regions))
    spans = BYTES.byte_spans(ids)
    assert spans.tolist() == [[i, i + 1] for i in range(21)]
    assert BYTES.region_of_tokens(ids, regions).tolist() == [0] * 4 + [1] * 4 + [2] * 7 + [3] * 6
    gpt2 = tok.get_tokenizer("gpt2")  # the same mapping with multi-byte BPE tokens, split characters included
    ids = gpt2.encode("".join(regions))
    owner = gpt2.region_of_tokens(ids, regions)
    assert [gpt2.decode([t for t, o in zip(ids, owner) if o == w]) for w in range(4)] == regions
    with pytest.raises(tok.TokenizerError, match="bytes tokens span 3 bytes but the regions hold 4"):
        BYTES.region_of_tokens([1, 2, 3], ["abcd"])


def test_unknown_tokenizer_names_the_choices():
    with pytest.raises(tok.TokenizerError, match=r"unknown tokenizer 'utf8'; choose one of gpt2, bytes"):
        tok.get_tokenizer("utf8")
    assert [tok.tokenizer_of_code(code) for code in (0, 1, 9)] == ["gpt2", "bytes", None]
