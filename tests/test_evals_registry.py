"""The benchmark registry: one source for every benchmark's metrics, headline, chance, ceiling and stored label."""
import pytest

from genprune_nb.config import get_preset
from genprune_nb.evals import Benchmark, all_benchmarks, get_benchmark, labels, preset_sizes, register
from genprune_nb.study.results import task_label

EVERY = ["val_loss", "hellaswag", "hellaswag_lmeval", "mmlu", "mmlu_lmeval_0shot", "mmlu_lmeval_5shot", "blimp",
         "reading_times", "brain_encoding", "brain_encoding_localized"]


def test_every_benchmark_is_registered_with_its_facts():
    found = all_benchmarks()
    assert set(EVERY) <= set(found)
    for b in found.values():
        assert b.headline in b.metrics and b.description
    assert get_benchmark("hellaswag").chance == 0.25 and get_benchmark("blimp").chance == 0.5
    assert get_benchmark("reading_times").ceiling == 0.858 and get_benchmark("brain_encoding").ceiling == 0.559
    assert get_benchmark("brain_encoding_localized").headline == "r"
    with pytest.raises(ValueError, match="unknown benchmark 'hellaswog'.*hellaswag"):
        get_benchmark("hellaswog")


def test_report_and_paper_read_the_registry():
    from genprune_nb.report import benchmarks as report
    from genprune_nb.report import paper

    assert {name: report.headline_metric(f"{name}@7") for name in all_benchmarks()} == {
        name: b.headline for name, b in all_benchmarks().items()}
    assert report.chance_level("mmlu_lmeval_5shot") == 0.25 and report.chance_level("val_loss") is None
    assert report.headline_metric("val_loss_curve") is None  # the logged curve is no benchmark
    assert paper.NOISE_CEILING == get_benchmark("brain_encoding").ceiling


def test_quick_run_labels_are_the_ones_stored_before():
    """The smoke and tiny studies' results hold these labels; the registry must keep writing exactly them."""
    smoke = labels(EVERY, preset_sizes(get_preset("smoke")))
    assert smoke == ["val_loss@4", "hellaswag@4", "hellaswag_lmeval@4", "mmlu@4", "mmlu_lmeval_0shot@4",
                     "mmlu_lmeval_5shot@4", "blimp@4", "reading_times@stories=1,words=40",
                     "brain_encoding@sentences=40", "brain_encoding_localized@sentences=40"]
    assert labels(EVERY, preset_sizes(get_preset("gpt2-124m"))) == EVERY  # a full run carries no suffix
    tiny = preset_sizes(get_preset("tiny"), limit=7)  # a given size beats the preset's budget
    assert labels(["mmlu", "reading_times"], tiny) == ["mmlu@7", "reading_times@stories=1,words=300"]
    assert task_label("reading_times", stories=[3, 1, 3]) == "reading_times@stories=1,3"
    assert task_label("reading_times", stories=None, words=50) == "reading_times@words=50"
    assert get_benchmark("brain_encoding").label({"limit": 5}) == "brain_encoding"  # it has no item limit


def test_register_refuses_a_taken_name_and_a_headline_it_does_not_write():
    clash = Benchmark("hellaswag", "another", lambda s: (lambda m: []), ("acc",), "acc")
    with pytest.raises(ValueError, match="'hellaswag' is already registered"):
        register(clash)
    with pytest.raises(ValueError, match="headline 'f1' is not one of its metrics"):
        register(Benchmark("new_task", "x", lambda s: (lambda m: []), ("acc",), "f1"))
    assert "new_task" not in all_benchmarks()
    with pytest.raises(ValueError, match="'new_task': unknown limit_rule 'first_n'"):
        Benchmark("new_task", "x", lambda s: (lambda m: []), ("acc",), "acc", limit_rule="first_n")


def test_a_non_default_encoding_protocol_is_stored_under_its_own_label():
    brain = ["brain_encoding", "brain_encoding_localized"]
    quick = {"n_sentences": 40}
    assert labels(brain, quick, {"protocol": "authors"}) == labels(brain, quick) == [
        "brain_encoding@sentences=40", "brain_encoding_localized@sentences=40"]
    assert labels(brain, quick, {"protocol": "standardized"}) == [
        "brain_encoding@sentences=40,protocol=standardized",
        "brain_encoding_localized@sentences=40,protocol=standardized"]
    assert labels(brain, {}, {"protocol": "standardized"})[0] == "brain_encoding@protocol=standardized"
    assert get_benchmark("hellaswag").label({"limit": 4}, {"protocol": "standardized"}) == "hellaswag@4"  # not its


def test_the_protocol_option_reaches_the_encoding_and_an_unknown_one_is_refused():
    import numpy as np
    import torch

    from genprune_nb.alignment.encoding import encoding_rows
    from genprune_nb.alignment.neural import tuckute2024
    from genprune_nb.evals import Settings, prepare
    from genprune_nb.model.gpt import GPT

    torch.manual_seed(0)
    model = GPT(get_preset("smoke").model).eval()
    neural = tuckute2024(limit=30)
    values = {}
    for protocol in ("authors", "standardized"):
        rows = prepare("brain_encoding", Settings({"n_sentences": 30}, options={"protocol": protocol}))(model)
        values[protocol] = [r["value"] for r in rows]
        direct = encoding_rows(model, neural, protocol=protocol)
        np.testing.assert_allclose(values[protocol], [r["value"] for r in direct])
    assert not np.allclose(values["authors"], values["standardized"])
    with pytest.raises(ValueError, match=r"protocol 'ridge'; choose from \['authors', 'standardized'\]"):
        prepare("brain_encoding_localized", Settings({"n_sentences": 30}, options={"protocol": "ridge"}))
