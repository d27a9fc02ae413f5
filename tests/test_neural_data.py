import numpy as np
import pandas as pd
import pytest

from genprune_nb.alignment.neural import sentence_dataset, tuckute2024


def test_tuckute_baseline_sentences(external_data_dir, monkeypatch):
    monkeypatch.setenv("GENPRUNE_DATA_DIR", str(external_data_dir))
    data = tuckute2024()
    assert data.dims == ("presentation", "neuroid") and data.shape == (1000, 1)
    assert np.isfinite(data.values).all()
    assert data["stimulus_id"].to_index().is_unique
    assert set(data["set"].values) == {"baseline"}
    assert data["neuroid_id"].item() == "language_network"
    assert data["noise_ceiling"].item() == pytest.approx(0.559, abs=5e-4)
    assert data.mean().item() == pytest.approx(-0.013, abs=1e-3) and data.std().item() == pytest.approx(0.276, abs=1e-3)
    both = tuckute2024(["drive", "suppress"])
    assert both.shape == (1000, 1) and dict(pd.Series(both["set"].values).value_counts()) == {"drive": 500,
                                                                                             "suppress": 500}
    with pytest.raises(ValueError, match="unknown Tuckute 2024 set"):
        tuckute2024(["B"])


def test_tuckute_bad_files_are_refused_by_name(external_data_dir, tmp_path):
    good = pd.read_csv(external_data_dir / "tuckute2024_devarda" / "tuckute_averaged.csv")
    ceilings = external_data_dir / "tuckute2024_devarda" / "NC-allroi-data_lang_extract.csv"
    bad = tmp_path / "responses.csv"
    good.drop(columns="EffectSize").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"responses.csv: missing column\(s\) \['EffectSize'\]"):
        tuckute2024(path=bad, ceiling_path=ceilings)
    good.drop(columns="cond").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['cond'\]"):
        tuckute2024(path=bad, ceiling_path=ceilings)
    pd.concat([good, good.iloc[[3]]]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="1 duplicate sentence id.*'A bunny can be fluffy sometimes.'"):
        tuckute2024(path=bad, ceiling_path=ceilings)
    with pytest.raises(ValueError, match="no noise ceiling for roi 'lang_XX'"):
        tuckute2024(path=ceilings.parent / "tuckute_averaged.csv", ceiling_path=ceilings, ceiling_roi="lang_XX")


def test_generic_sentence_dataset():
    table = pd.DataFrame({"id": [10, 11, 12], "text": ["a b.", "c d.", "e f."], "v1": [0.1, 0.2, 0.3],
                          "v2": [1.0, 2.0, 3.0], "group": ["x", "y", "x"]})
    data = sentence_dataset(table, responses=["v1", "v2"], sentence="text", stimulus_id="id", coords=["group"],
                            noise_ceiling={"v2": 0.8}, source="toy")
    assert data.shape == (3, 2) and list(data["stimulus_id"].values) == [10, 11, 12]
    assert list(data["stimulus"].values) == ["a b.", "c d.", "e f."] and list(data["group"].values) == ["x", "y", "x"]
    assert list(data["neuroid_id"].values) == ["v1", "v2"]
    np.testing.assert_array_equal(data["noise_ceiling"].values, [np.nan, 0.8])
    np.testing.assert_array_equal(data.values[:, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"toy: missing column\(s\) \['v3'\]"):
        sentence_dataset(table, responses=["v1", "v3"], sentence="text", source="toy")
    with pytest.raises(ValueError, match="duplicate sentence id.*column 'id'.*\\[10\\]"):
        sentence_dataset(table.assign(id=[10, 10, 12]), responses=["v1"], sentence="text", stimulus_id="id")
    with pytest.raises(ValueError, match=r"column 'v1', row 1 \(id 11\): response nan is not a finite number"):
        sentence_dataset(table.assign(v1=[0.1, np.nan, 0.3]), responses=["v1"], sentence="text", stimulus_id="id")
    with pytest.raises(ValueError, match="no response columns"):
        sentence_dataset(table, responses=[], sentence="text")


def test_tuckute_first_sentences_only(external_data_dir):
    full, first = tuckute2024(), tuckute2024(limit=5)
    assert first.sizes["presentation"] == 5
    assert list(first["stimulus"].values) == list(full["stimulus"].values[:5])
    assert tuckute2024(limit=0).sizes["presentation"] == full.sizes["presentation"]
    with pytest.raises(ValueError, match="limit"):
        tuckute2024(limit=-1)


TOY = pd.DataFrame({"id": [10, 11, 12], "text": ["a b.", "c d.", "e f."], "v1": [0.1, 0.2, 0.3]})


def test_a_string_names_one_response_column():
    data = sentence_dataset(TOY, responses="v1", sentence="text", stimulus_id="id")
    assert data.shape == (3, 1) and list(data["neuroid_id"].values) == ["v1"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['EffectSize'\]"):
        sentence_dataset(TOY, responses="EffectSize", sentence="text")


@pytest.mark.parametrize("change,message", [
    ({"text": ["a b.", None, "e f."]}, "toy: column 'text', row 1: the sentence is missing"),
    ({"text": ["a b.", "  ", "e f."]}, "toy: column 'text', row 1: the sentence is '  '"),
    ({"text": ["a b.", "c d.", "a b."]}, "toy: column 'text', row 2: the sentence 'a b.' repeats row 0"),
    ({"v1": [0.1, "high", 0.3]}, "toy: column 'v1', row 1 \\(id 11\\): response 'high' is not a finite number"),
])
def test_bad_sentence_tables_are_refused_naming_column_and_row(change, message):
    from genprune_nb.alignment.neural import SentenceTableError

    with pytest.raises(SentenceTableError, match=message):
        sentence_dataset(TOY.assign(**change), responses="v1", sentence="text", stimulus_id="id", source="toy")


def test_whitespace_is_normalised_only_when_asked():
    spaced = TOY.assign(text=["a  b.", " c d.", "e\tf. "])
    assert list(sentence_dataset(spaced, responses="v1", sentence="text")["stimulus"].values) == list(spaced["text"])
    data = sentence_dataset(spaced, responses="v1", sentence="text", normalize_whitespace=True)
    assert list(data["stimulus"].values) == ["a b.", "c d.", "e f."] == list(data["stimulus_id"].values)
    with pytest.raises(ValueError, match="row 1: the sentence 'a b.' repeats row 0"):
        sentence_dataset(spaced.assign(text=["a b.", "a  b."] + ["e f."]), responses="v1", sentence="text",
                         normalize_whitespace=True)
