"""Reading times as an xarray DataArray: one entry per word, in reading order, with what is known about it.

Values are the mean reading time of each word over readers (ms). Along the one dimension ``presentation`` (a word as
shown to readers) the coordinates are ``story``, ``position`` (1-based within its story), ``word``, ``separator``
(the text before the word: ``""`` for a story's first word), ``sentence`` and ``word_in_sentence`` (1-based within
its story / sentence), ``first_in_sentence``, ``n_readers`` and ``sd`` (of the readers' times; NaN if unknown).

:func:`from_table` builds one from any table of words and reading times; :func:`natural_stories` loads the Natural
Stories corpus (Futrell et al. 2018): 10 stories, 10,256 words, per-word mean self-paced reading time.
"""
from __future__ import annotations

import csv
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..data.catalog import locate
from ..errors import GenpruneError

DIM = "presentation"
NATURAL_STORIES = range(1, 11)

_SENTENCE_END = re.compile(r"[.?!][\"')\]]*$")  # final punctuation, then closing quotes or brackets
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "prof.", "vs."}


class ReadingTimeTableError(GenpruneError, ValueError):
    """A table of reading times lacks a column or holds values that cannot be read."""


def sentence_starts(words: Sequence[str], story: Sequence | None = None) -> np.ndarray:
    """True for each word that begins a sentence: a story's first word, and any word not in lower case after one
    that ends in ``.``, ``?`` or ``!`` (closing quotes/brackets allowed after it; titles such as ``Mr.`` do not
    end sentences, and ``'Stop!' he said`` is one sentence)."""
    story = np.zeros(len(words)) if story is None else np.asarray(story)
    starts = np.ones(len(words), dtype=bool)
    for i in range(1, len(words)):
        prev = words[i - 1].lstrip("'\"([").lower()
        ends = bool(_SENTENCE_END.search(prev)) and prev not in _ABBREVIATIONS
        starts[i] = (ends and not words[i].lstrip("'\"([")[:1].islower()) or story[i] != story[i - 1]
    return starts


def _numeric(table: pd.DataFrame, column: str, role: str) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype(float))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReadingTimeTableError(
            f"column {column!r} ({role}) must hold finite numbers; row {row} has {table[column].iloc[row]!r}"
        )
    return values.to_numpy(dtype=float)


def from_table(
    table: pd.DataFrame,
    *,
    word: str = "word",
    rt: str = "rt",
    story: str | None = None,
    position: str | None = None,
    sentence: str | None = None,
    n_readers: str | None = None,
    sd: str | None = None,
    separator: str = " ",
    name: str = "reading_time",
    source: str = "",
) -> xr.DataArray:
    """A reading-time DataArray from a table with one row per word; the arguments name its columns.

    Only ``word`` and ``rt`` are required. Without ``story`` the table is one story; without ``position`` words are
    in table order (else sorted by story, then position); without ``sentence`` sentences are found by punctuation
    (:func:`sentence_starts`). ``separator`` joins the words of a story into its text.
    A missing column, a missing word, or a non-numeric reading time / position / n_readers / sd is refused,
    naming the column.
    """
    roles = {"word": word, "reading time": rt, "story": story, "position": position, "sentence": sentence,
             "number of readers": n_readers, "sd": sd}
    for role, column in roles.items():
        if column is not None and column not in table.columns:
            raise ReadingTimeTableError(
                f"the table has no column {column!r} (the {role}); its columns are {list(table.columns)}"
            )
    if table.empty:
        raise ReadingTimeTableError("the table has no rows")
    if table[word].isna().any():
        row = int(np.flatnonzero(table[word].isna().to_numpy())[0])
        raise ReadingTimeTableError(f"column {word!r} (the word) is missing a value in row {row}")
    df = pd.DataFrame({"word": table[word].astype(str).to_numpy(), "rt": _numeric(table, rt, "reading time")})
    df["story"] = table[story].to_numpy() if story is not None else 1
    df["position"] = _numeric(table, position, "position") if position is not None else np.nan
    df["n_readers"] = _numeric(table, n_readers, "number of readers") if n_readers is not None else np.nan
    df["sd"] = _numeric(table, sd, "sd") if sd is not None else np.nan
    if sentence is not None:
        df["sentence_label"] = table[sentence].to_numpy()
    if position is not None:
        df = df.sort_values(["story", "position"], kind="stable")
        if df.duplicated(["story", "position"]).any():
            raise ReadingTimeTableError(f"column {position!r} (the position) repeats a value within a story")
    else:
        df = df.sort_values("story", kind="stable")  # keep table order within each story
        df["position"] = df.groupby("story").cumcount() + 1
    if (df["position"] % 1).any():
        raise ReadingTimeTableError(f"column {position!r} (the position) must hold whole numbers")
    df = df.reset_index(drop=True).astype({"position": int})
    story_start = ~df["story"].duplicated().to_numpy()
    if sentence is not None:
        label = df["sentence_label"].to_numpy()
        df["first_in_sentence"] = story_start | np.r_[True, label[1:] != label[:-1]]
    else:
        df["first_in_sentence"] = sentence_starts(list(df["word"]), df["story"].to_numpy())
    df["sentence"] = df.groupby("story")["first_in_sentence"].cumsum()
    df["word_in_sentence"] = df.groupby(["story", "sentence"]).cumcount() + 1
    df["separator"] = np.where(story_start, "", separator)
    coords = {c: (DIM, df[c].to_numpy()) for c in
              ["story", "position", "word", "separator", "sentence", "word_in_sentence", "first_in_sentence",
               "n_readers", "sd"]}
    return xr.DataArray(df["rt"].to_numpy(), dims=(DIM,), coords=coords, name=name,
                        attrs={"units": "ms", "source": source})


def natural_stories(stories: Iterable[int] | None = None, max_words: int | None = None) -> xr.DataArray:
    """Natural Stories (Futrell et al. 2018): every word of the 10 stories with its mean self-paced reading time.

    Words are those shown in the experiment (``all_stories.tok``); times, sd and number of readers come from
    ``processed_wordinfo.tsv`` (after the authors' filtering). For quick runs, ``stories`` picks a subset (ids 1..10)
    and ``max_words`` keeps the first words of each story.
    """
    read = dict(sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)  # words such as "null" stay words
    words = pd.read_csv(locate("naturalstories", "all_stories.tok"), **read)
    info = pd.read_csv(locate("naturalstories", "processed_wordinfo.tsv"), **read)
    table = words.merge(info.drop(columns="word"), on=["item", "zone"], how="left", validate="one_to_one")
    if stories is not None:
        stories = sorted(set(stories))
        unknown = [s for s in stories if s not in NATURAL_STORIES]
        if unknown:
            raise ValueError(f"Natural Stories has stories 1..10, not {unknown}")
        table = table[table["item"].isin(stories)]
    if max_words is not None:
        table = table[table["zone"] <= max_words]
    return from_table(table, word="word", rt="meanItemRT", story="item", position="zone", n_readers="nItem",
                      sd="sdItemRT", source="Natural Stories (Futrell et al. 2018), processed_wordinfo.tsv")


def story_words(rts: xr.DataArray) -> list[tuple[object, list[str], list[str]]]:
    """(story, words, separators) of every story in ``rts``, in order."""
    out = []
    for story in pd.unique(rts["story"].values):
        sel = rts["story"].values == story
        out.append((story, list(rts["word"].values[sel]), list(rts["separator"].values[sel])))
    return out


def describe(rts: xr.DataArray) -> str:
    """One line on what a reading-time array holds: its words, stories and sentences."""
    return (f"{rts.sizes[DIM]} words in {len(pd.unique(rts['story'].values))} stories, "
            f"{int(rts['first_in_sentence'].values.sum())} sentences")
