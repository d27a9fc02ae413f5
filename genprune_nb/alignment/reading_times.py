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


def _show(value: object) -> str:
    """A cell as the user typed it: numpy scalars as plain Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _fail(column: str, role: str, row: int, problem: str) -> ReadingTimeTableError:
    return ReadingTimeTableError(f"column {column!r} ({role}), row {row}: {problem}")


def _numbers(table: pd.DataFrame, column: str, role: str, missing_ok: np.ndarray | bool = False) -> np.ndarray:
    """The column as floats; an empty cell is NaN where ``missing_ok``, anything else not a finite number is refused."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    empty = raw.isna().to_numpy()
    for row in np.flatnonzero(~np.isfinite(values)):
        if not (empty[row] and np.broadcast_to(missing_ok, values.shape)[row]):
            raise _fail(column, role, int(row), f"{_show(raw.iloc[row])} is not a finite number")
    return values


def _labels(table: pd.DataFrame, column: str, role: str) -> np.ndarray:
    """A label column (story, sentence) with no empty cell."""
    missing = np.flatnonzero(table[column].isna().to_numpy())
    if len(missing):
        raise _fail(column, role, int(missing[0]), "the value is missing")
    return table[column].to_numpy()


def _first_within_story(bad: np.ndarray, story: np.ndarray) -> int | None:
    """The first row after the first of its story where ``bad`` holds (compared with the row before)."""
    rows = np.flatnonzero(bad[1:] & (story[1:] == story[:-1])) + 1
    return int(rows[0]) if len(rows) else None


RESERVED = ("story", "position", "word", "separator", "sentence", "word_in_sentence", "first_in_sentence",
            "n_readers", "sd", "row", "rt", "surprisal", "previous_surprisal", "n_tokens", "punctuation", "length",
            "log_frequency", DIM)
"""Names ``from_table`` and the regression use for their own columns: a kept column may not take one."""


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
    keep: Sequence[str] = (),
    separator: str = " ",
    name: str = "reading_time",
    source: str = "",
) -> xr.DataArray:
    """A reading-time DataArray from a table with one row per word in reading order; the arguments name its columns.

    The output has one entry per input row, in the input's order: the table's index becomes the coordinate ``row``
    and each column in ``keep`` (e.g. a data set's own frequency or a per-word predictor) a coordinate of its own
    name, so they stay aligned with the words and can be chosen as regression baselines by name.
    Only ``word`` and ``rt`` are required. A word whose reading time is empty (NaN) is *context*: it is part of the
    text the model reads but is not scored (e.g. sentence-initial words a data set leaves out). Without ``story`` the
    table is one story; a story's rows must be contiguous, and with ``position`` its positions must increase (without
    it, words are numbered in table order). Without ``sentence``, sentences are found by punctuation
    (:func:`sentence_starts`). ``separator`` joins the words of a story into its text.
    Refused with a one-line error naming column and row: a missing column; an empty or blank word; a reading time
    that is not a number or is negative; an empty story or sentence label; a position that is not a whole number or
    does not increase; a row repeated exactly within a story when no position tells the repeats apart; an sd or
    number of readers that is not a finite number (>= 0, resp. > 0) for a scored word.
    """
    roles = {"word": word, "reading time": rt, "story": story, "position": position, "sentence": sentence,
             "number of readers": n_readers, "sd": sd, **{f"kept column {c!r}": c for c in keep}}
    for role, column in roles.items():
        if column is not None and column not in table.columns:
            raise ReadingTimeTableError(
                f"the table has no column {column!r} (the {role}); its columns are {list(table.columns)}"
            )
    taken = [c for c in keep if c in RESERVED]
    if taken:
        raise ReadingTimeTableError(f"kept column(s) {taken} would take a name reading times use; rename them "
                                    f"(reserved: {list(RESERVED)})")
    if table.empty:
        raise ReadingTimeTableError("the table has no rows")
    words = table[word]
    for row, w in enumerate(words):
        if pd.isna(w) or not str(w).strip():
            raise _fail(word, "the word", row, f"the word is {'missing' if pd.isna(w) else repr(w)}")
    times = _numbers(table, rt, "reading time", missing_ok=True)
    negative = np.flatnonzero(times < 0)
    if len(negative):
        raise _fail(rt, "reading time", int(negative[0]), f"{times[negative[0]]:g} ms is negative")
    if np.isnan(times).all():
        raise ReadingTimeTableError(f"column {rt!r} (reading time) has no value: no word would be scored")
    context = np.isnan(times)
    stories = _labels(table, story, "story") if story is not None else np.ones(len(table), dtype=int)
    new_story = np.r_[True, stories[1:] != stories[:-1]]
    seen: set = set()
    for row in np.flatnonzero(new_story):
        if stories[row] in seen:
            raise _fail(story, "story", int(row), f"story {_show(stories[row])} resumes after another story; give each "
                        "story's rows together, in reading order")
        seen.add(stories[row])
    if position is not None:
        pos = _numbers(table, position, "position")
        if (pos % 1).any():
            row = int(np.flatnonzero(pos % 1)[0])
            raise _fail(position, "position", row, f"{pos[row]:g} is not a whole number")
        row = _first_within_story(np.r_[False, pos[1:] <= pos[:-1]], stories)
        if row is not None:
            raise _fail(position, "position", row, f"{pos[row]:g} does not follow {pos[row - 1]:g}; give each "
                        "story's words in reading order (sort by story, then position)")
        pos = pos.astype(int)
    else:
        repeats = table.assign(_story=stories).duplicated(keep="first").to_numpy()
        if repeats.any():
            row = int(np.flatnonzero(repeats)[0])
            raise ReadingTimeTableError(f"row {row} repeats an earlier row of its story in every column; give a "
                                        "position column if the words really repeat")
        pos = pd.Series(stories).groupby(stories).cumcount().to_numpy() + 1
    scored = ~context
    readers = _numbers(table, n_readers, "number of readers", context) if n_readers is not None \
        else np.full(len(table), np.nan)
    spread = _numbers(table, sd, "sd", context) if sd is not None else np.full(len(table), np.nan)
    for column, role, values, bad in ((n_readers, "number of readers", readers, readers <= 0),
                                      (sd, "sd", spread, spread < 0)):
        rows = np.flatnonzero(bad & scored)
        if len(rows):
            raise _fail(column, role, int(rows[0]), f"{values[rows[0]]:g} is out of range")
    word_text = words.astype(str).to_numpy(dtype=object)
    if sentence is not None:
        label = _labels(table, sentence, "sentence")
        first = new_story | np.r_[True, label[1:] != label[:-1]]
    else:
        first = sentence_starts(list(word_text), stories)
    sentence_no = pd.Series(first).groupby(stories).cumsum().to_numpy()
    in_sentence = pd.DataFrame({"s": stories, "n": sentence_no}).groupby(["s", "n"]).cumcount().to_numpy() + 1
    coords = {
        "row": table.index.to_numpy(), "story": stories, "position": pos, "word": word_text,
        "separator": np.where(new_story, "", separator).astype(object), "sentence": sentence_no,
        "word_in_sentence": in_sentence, "first_in_sentence": first, "n_readers": readers, "sd": spread,
        **{c: table[c].to_numpy() for c in keep},
    }
    return xr.DataArray(times, dims=(DIM,), coords={c: (DIM, v) for c, v in coords.items()}, name=name,
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
    table = table.sort_values(["item", "zone"], kind="stable")
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
