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
    labelled = table.assign(sent=[7, 7, 8, 8, 8], story=["b", "b", "b", "a", "a"], pos=[1, 2, 3, 1, 2])
    rts = from_table(labelled, word="token", rt="ms", sentence="sent", story="story", position="pos")
    assert rts["word"].values.tolist() == ["The", "cat", "sat.", "It", "purred."]  # the table's order
    assert rts["first_in_sentence"].values.tolist() == [True, False, True, True, False]
    assert rts["separator"].values.tolist() == ["", " ", " ", "", " "]
    assert rts["word_in_sentence"].values.tolist() == [1, 2, 1, 1, 2]


def test_from_table_keeps_input_order_index_and_extra_columns():
    table = pd.DataFrame({"w": ["A", "dog", "ran.", "Then", "it", "sat."], "rt": [310, 300, 420, 330, 280, 400],
                          "freq": [9.0, 4.0, 3.0, 5.0, 8.0, 3.5], "s": [2, 2, 2, 1, 1, 1], "p": [1, 2, 3, 4, 5, 6]},
                         index=[40, 41, 42, 10, 11, 12])
    rts = from_table(table, word="w", story="s", position="p", keep=["freq"])
    assert rts["row"].values.tolist() == [40, 41, 42, 10, 11, 12]
    np.testing.assert_array_equal(rts["freq"].values, table["freq"].to_numpy())  # aligned with the input rows
    np.testing.assert_array_equal(rts.values, table["rt"].to_numpy())
    assert rts["position"].values.tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ReadingTimeTableError, match="kept column.*'word'"):
        from_table(table.assign(word=1), word="w", keep=["word"])
    with pytest.raises(ReadingTimeTableError, match="no column 'zipf'"):
        from_table(table, word="w", keep=["zipf"])


def test_words_without_a_reading_time_are_context_not_scored():
    table = pd.DataFrame({"word": ["Once", "upon", "a", "time.", "There", "was"],
                          "rt": [None, 300, 280, 350, None, 310],
                          "sd": [np.nan, 90, 80, 100, np.nan, 95], "n": [np.nan, 40, 40, 40, np.nan, 40]})
    rts = from_table(table, sd="sd", n_readers="n")
    assert rts.sizes[DIM] == 6 and np.isnan(rts.values[[0, 4]]).all()  # still in the text, not scored
    assert rts["word"].values.tolist() == table["word"].tolist()
    assert rts["first_in_sentence"].values.tolist() == [True, False, False, False, True, False]
    with pytest.raises(ReadingTimeTableError, match="column 'sd' \\(sd\\), row 1: nan"):
        from_table(table.assign(sd=[np.nan, np.nan, 80, 100, np.nan, 95]), sd="sd")
    with pytest.raises(ReadingTimeTableError, match="no word would be scored"):
        from_table(table.assign(rt=np.nan))


@pytest.mark.parametrize("column,kwargs", [
    ("rt", {}),
    ("pos", {"position": "pos"}),
    ("readers", {"n_readers": "readers"}),
])
def test_from_table_refuses_a_missing_column(column, kwargs):
    table = pd.DataFrame({"word": ["a", "b"], "rt": [1.0, 2.0]}).drop(columns=[c for c in ["rt"] if c == column])
    with pytest.raises(ReadingTimeTableError, match=f"no column '{column}'"):
        from_table(table, **kwargs)


@pytest.mark.parametrize("bad", ["slow", float("inf")])
def test_from_table_refuses_a_non_numeric_reading_time(bad):
    table = pd.DataFrame({"word": ["a", "b", "c"], "RT": [300, bad, 310]})
    with pytest.raises(ReadingTimeTableError, match="column 'RT' \\(reading time\\), row 1: .* not a finite number"):
        from_table(table, rt="RT")


GOOD = {"word": ["The", "cat", "sat.", "It", "ran."], "rt": [300.0, 320, 410, 290, 500], "story": [1, 1, 1, 2, 2],
        "sent": [1, 1, 1, 2, 2], "pos": [1, 2, 3, 1, 2]}


@pytest.mark.parametrize("change,kwargs,message", [
    ({"word": ["The", "", "sat.", "It", "ran."]}, {}, "column 'word' \\(the word\\), row 1: the word is ''"),
    ({"word": ["The", "cat", "  ", "It", "ran."]}, {}, "column 'word' .*row 2"),
    ({"word": ["The", None, "sat.", "It", "ran."]}, {}, "column 'word' .*row 1: the word is missing"),
    ({"rt": [300.0, -5, 410, 290, 500]}, {}, "column 'rt' .*row 1: -5 ms is negative"),
    ({"story": [1, 1, None, 2, 2]}, {"story": "story"}, "column 'story' \\(story\\), row 2: the value is missing"),
    ({"story": [1, 1, 2, 1, 1]}, {"story": "story"}, "row 3: story 1 resumes"),
    ({"sent": [1, np.nan, 1, 2, 2]}, {"sentence": "sent"}, "column 'sent' \\(sentence\\), row 1: .*missing"),
    ({"pos": [1, 2, 2, 1, 2]}, {"story": "story", "position": "pos"}, "column 'pos' .*row 2: 2 does not follow 2"),
    ({"pos": [1, 2, 2.5, 1, 2]}, {"position": "pos", "story": "story"}, "column 'pos' .*row 2: 2.5 is not a whole"),
])
def test_from_table_refuses_bad_values_naming_column_and_row(change, kwargs, message):
    with pytest.raises(ReadingTimeTableError, match=message):
        from_table(pd.DataFrame({**GOOD, **change}), **kwargs)


def test_from_table_refuses_exact_repeats_without_a_position():
    doubled = pd.concat([pd.DataFrame(GOOD)] * 2, ignore_index=True)  # a table pasted twice
    with pytest.raises(ReadingTimeTableError, match="row 5 repeats an earlier row.*position"):
        from_table(doubled.drop(columns=["story", "pos"]))
    from_table(doubled.assign(pos=range(10)).drop(columns="story"), position="pos")  # repeats told apart: fine
