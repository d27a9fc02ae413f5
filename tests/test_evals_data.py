"""Benchmark data readers: the real files parse with the published counts; a malformed row names file and line."""
import json
from collections import Counter

import pytest

from genprune_nb.evals import DataFormatError, blimp, hellaswag, mmlu
from genprune_nb.evals.datafile import describe_limit, first_per_subset, round_robin, take

GOOD_HS = {"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "ctx": "b c", "endings": ["1", "2", "3", "4"], "label": 0}


def test_real_hellaswag(external_data_dir):
    items = hellaswag.load()
    assert len(items) == 10_042
    assert Counter(i.label for i in items) == {0: 2515, 1: 2485, 2: 2584, 3: 2458}
    assert items[0].ctx == "A man is sitting on a roof. he" and items[0].label == 3
    assert len(hellaswag.load(limit=7)) == 7


def test_real_mmlu(external_data_dir):
    test = mmlu.load("test")
    assert len(test) == 57 and sum(map(len, test.values())) == 14_042
    assert sum(map(len, mmlu.load("dev").values())) == 285
    first = test["abstract_algebra"][0]
    assert first.choices == ("0", "4", "2", "6") and first.answer == 1
    assert any("\n" in i.question for items in test.values() for i in items)  # multi-line questions survive


def test_real_blimp(external_data_dir):
    pairs = blimp.load()
    assert len(pairs) == 67 and {len(p) for p in pairs.values()} == {1000}
    assert len({p[0].phenomenon for p in pairs.values()}) == 13
    assert pairs["adjunct_island"][0].good == "Who should Derek hug after shocking Richard?"


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD_HS.items() if k != "endings"}, r"line 2: missing field\(s\) \['endings'\]"),
    ({**GOOD_HS, "label": 4}, "line 2: 'label' 4 is outside 0..3"),
    ({**GOOD_HS, "label": "x"}, "line 2: 'label' is not an integer"),
    ({**GOOD_HS, "endings": ["1", "2", "3"]}, "line 2: 'endings' must be a list of 4 strings"),
    ("{not json", "line 2: not valid JSON"),
    ("", "line 2: empty line"),
])
def test_hellaswag_malformed_row(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "hs.jsonl", [GOOD_HS, bad, GOOD_HS])
    with pytest.raises(DataFormatError, match=message) as err:
        hellaswag.load(path)
    assert str(path) in str(err.value) and err.value.line == 2


def test_mmlu_both_layouts_read_alike(tmp_path):
    header = tmp_path / "h.csv"
    header.write_text('question,choice0,choice1,choice2,choice3,answer\n"Two\nlines?",a,b,c,d,3\nQ2,a,b,c,d,0\n')
    original = tmp_path / "o.csv"
    original.write_text('"Two\nlines?",a,b,c,d,D\nQ2,a,b,c,d,A\n')
    assert mmlu.read_csv(header, "s") == mmlu.read_csv(original, "s")
    assert mmlu.read_csv(original, "s")[0] == mmlu.Item("s", "Two\nlines?", ("a", "b", "c", "d"), 3)


@pytest.mark.parametrize("content, message", [
    ('question,choice0,choice1,choice2,choice3,answer\n"Multi\nline",a,b,c,d,1\nQ,a,b,c,4\n',
     "line 4: expected 6 fields"),  # the record after a two-line question starts on line 4
    ("question,choice0,choice1,choice2,choice3,answer\nQ,a,b,c,d,1\nQ,a,b,c,d,4\n", "line 3: answer '4' is not"),
    ("Q,a,b,c,d,A\nQ,a,b,c,d,E\n", "line 2: answer 'E' is not a letter A-D"),
    ("Q,a,b,c,d,A\nQ,a,b,c,d,1\n", "line 2: answer '1' is not a letter"),
    ("question,choice0,choice1,choice2,choice3,answer\nQ,a,b,c,d,1\n\nQ,a,b,c,d,1\n", "line 3: expected 6 fields"),
    ("question,choice0,choice1,choice2,choice3,answer\n", "line 1: no questions"),
])
def test_mmlu_malformed_row(tmp_path, content, message):
    path = tmp_path / "x_test.csv"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message) as err:
        mmlu.read_csv(path, "x")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"sentence_bad": None}, r"line 2: missing field\(s\) \['sentence_bad'\]"),
    ({"UID": "other"}, "line 2: UID 'other' differs from the file's paradigm 'toy'"),
    ({"sentence_good": ""}, "line 2: sentence_good and sentence_bad must be non-empty"),
    ({"linguistics_term": "y"}, "line 2: linguistics_term 'y' differs"),
])
def test_blimp_malformed_row(tmp_path, change, message):
    good = {"sentence_good": "A b.", "sentence_bad": "B a.", "UID": "toy", "linguistics_term": "x"}
    bad = {k: v for k, v in {**good, **change}.items() if v is not None}
    path = write_jsonl(tmp_path / "toy.jsonl", [good, bad])
    with pytest.raises(DataFormatError, match=message) as err:
        blimp.read_paradigm(path)
    assert str(path) in str(err.value)


def test_round_robin_limit():
    subsets = {"a": [1, 2, 3], "b": [4], "c": [5, 6]}
    assert round_robin(subsets, 4) == {"a": [1, 2], "b": [4], "c": [5]}
    assert round_robin(subsets, 2) == {"a": [1], "b": [4]}
    assert round_robin(subsets, 100) == subsets == round_robin(subsets, None)
    with pytest.raises(ValueError, match="limit"):
        round_robin(subsets, 0)


def test_per_subset_limit_is_lm_evals_first_n_of_each():
    subsets = {"a": [1, 2, 3], "b": [4], "c": [5, 6]}
    assert first_per_subset(subsets, 2) == take(subsets, 2, "per_subset") == {"a": [1, 2], "b": [4], "c": [5, 6]}
    assert take(subsets, 2, "round_robin") == {"a": [1], "b": [4]}
    assert first_per_subset(subsets, None) == subsets
    with pytest.raises(ValueError, match="unknown limit rule 'first'"):
        take(subsets, 2, "first")
    with pytest.raises(ValueError, match="limit"):
        first_per_subset(subsets, 0)
    assert describe_limit("per_subset", "paradigm") == \
        "limit N = the first N items of each paradigm (lm-eval's --limit)"


def test_blimp_and_mmlu_limits_under_both_rules(tmp_path):
    (tmp_path / "blimp").mkdir()
    for uid, n in (("a", 3), ("b", 1), ("c", 2)):
        write_jsonl(tmp_path / "blimp" / f"{uid}.jsonl",
                    [{"sentence_good": f"{uid} good {i}.", "sentence_bad": f"{uid} bad {i}.", "UID": uid,
                      "linguistics_term": "t"} for i in range(n)])
    lmeval = blimp.pairs(limit=2, root=tmp_path / "blimp", rule="per_subset")
    assert {k: [p.good for p in v] for k, v in lmeval.items()} == {
        "a": ["a good 0.", "a good 1."], "b": ["b good 0."], "c": ["c good 0.", "c good 1."]}
    babylm = blimp.pairs(limit=2, root=tmp_path / "blimp")  # the default: round-robin, 2 in all
    assert {k: [p.good for p in v] for k, v in babylm.items()} == {"a": ["a good 0."], "b": ["b good 0."]}
    for split in ("test", "dev"):
        (tmp_path / "mmlu" / split).mkdir(parents=True)
    for subject, n in (("x", 3), ("y", 2)):
        (tmp_path / "mmlu" / "test" / f"{subject}_test.csv").write_text(
            "".join(f"{subject}{i}?,a,b,c,d,A\n" for i in range(n)))
    first = mmlu.questions("letters", limit=2, root=tmp_path / "mmlu", rule="per_subset")
    assert {k: len(v) for k, v in first.items()} == {"x": 2, "y": 2}
    turns = mmlu.questions("letters", limit=3, root=tmp_path / "mmlu")
    assert {k: len(v) for k, v in turns.items()} == {"x": 2, "y": 1}
