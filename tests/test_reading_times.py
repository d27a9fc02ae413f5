import numpy as np
import pandas as pd
import pytest

from genprune_nb.alignment.reading_times import (
    DIM,
    ReadingTimeTableError,
    from_table,
    natural_stories,
    sentence_starts,
    story_words,
)
from genprune_nb.data.catalog import DATA_DIR_ENV


@pytest.fixture(scope="module")
def ns(external_data_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DATA_DIR_ENV, str(external_data_dir))
        return natural_stories()


def test_natural_stories_has_every_word_with_its_reading_time(ns):
    assert ns.dims == (DIM,) and ns.sizes[DIM] == 10_256
    assert np.isfinite(ns.values).all() and (ns.values > 100).all()
    assert list(np.unique(ns["story"].values)) == list(range(1, 11))
    assert (ns["n_readers"].values >= 62).all() and np.isfinite(ns["sd"].values).all()
    first = ns.isel({DIM: slice(0, 3)})
    assert list(first["word"].values) == ["If", "you", "were"] and list(first["position"].values) == [1, 2, 3]
    assert list(first["separator"].values) == ["", " ", " "]
    stories = story_words(ns)
    assert [len(w) for _, w, _ in stories][:2] == [1073, 990]
    assert sum(s == "" for _, _, seps in stories for s in seps) == 10
    starts = ns["word"].values[ns["first_in_sentence"].values]
    assert starts[:3].tolist() == ["If", "It", "That"]  # "... as high as mountains. It is in this valley ..."
    assert ns["word_in_sentence"].values[ns["first_in_sentence"].values].max() == 1


def test_natural_stories_subset_and_unknown_story(external_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(external_data_dir))
    sub = natural_stories([3, 1])
    assert list(pd.unique(sub["story"].values)) == [1, 3] and sub.sizes[DIM] == 1073 + 1040
    assert natural_stories([2], max_words=7)["position"].values.tolist() == list(range(1, 8))
    with pytest.raises(ValueError, match="11"):
        natural_stories([11])


def test_sentence_starts_follow_punctuation():
    words = ["'Stop!'", "he", "said.", "Mr.", "Smith", "left?", "'Yes.'", "Then", "x", "(end.)", "New"]
    assert sentence_starts(words).nonzero()[0].tolist() == [0, 3, 6, 7, 10]
    assert sentence_starts(["a", "b"], story=[1, 2]).tolist() == [True, True]


def test_from_table_generic_corpus():
    table = pd.DataFrame({"token": ["The", "cat", "sat.", "It", "purred."], "ms": [300, 320.5, "410", 290, 500]})
    rts = from_table(table, word="token", rt="ms", separator=" ")
    assert rts.values.tolist() == [300, 320.5, 410, 290, 500]
    assert rts["sentence"].values.tolist() == [1, 1, 1, 2, 2]
    assert rts["position"].values.tolist() == [1, 2, 3, 4, 5]
    assert np.isnan(rts["sd"].values).all()
    labelled = table.assign(sent=[7, 7, 8, 8, 8], story=["b", "b", "b", "a", "a"], pos=[1, 2, 3, 2, 1])
    rts = from_table(labelled, word="token", rt="ms", sentence="sent", story="story", position="pos")
    assert rts["word"].values.tolist() == ["purred.", "It", "The", "cat", "sat."]  # sorted by story, position
    assert rts["first_in_sentence"].values.tolist() == [True, False, True, False, True]
    assert rts["separator"].values.tolist() == ["", " ", "", " ", " "]


@pytest.mark.parametrize("column,kwargs", [
    ("rt", {}),
    ("pos", {"position": "pos"}),
    ("readers", {"n_readers": "readers"}),
])
def test_from_table_refuses_a_missing_column(column, kwargs):
    table = pd.DataFrame({"word": ["a", "b"], "rt": [1.0, 2.0]}).drop(columns=[c for c in ["rt"] if c == column])
    with pytest.raises(ReadingTimeTableError, match=f"no column '{column}'"):
        from_table(table, **kwargs)


@pytest.mark.parametrize("bad", ["slow", None, float("inf")])
def test_from_table_refuses_a_non_numeric_reading_time(bad):
    table = pd.DataFrame({"word": ["a", "b", "c"], "RT": [300, bad, 310]})
    with pytest.raises(ReadingTimeTableError, match="column 'RT'.*row 1"):
        from_table(table, rt="RT")


def test_from_table_refuses_missing_words_and_repeated_positions():
    with pytest.raises(ReadingTimeTableError, match="column 'word'"):
        from_table(pd.DataFrame({"word": ["a", None], "rt": [1, 2]}))
    with pytest.raises(ReadingTimeTableError, match="column 'p'"):
        from_table(pd.DataFrame({"word": ["a", "b"], "rt": [1, 2], "p": [1, 1]}), position="p")
