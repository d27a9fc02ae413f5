"""What else the outer loop could hand down (issue 18): TrainedSparse, TrainedDense and Distilled beside the paper's
conditions, the bits each receives, and notebook 09 on the smoke preset."""
import math

import pytest
import torch
import torch.nn.functional as F

from genprune_nb.cli import main
from genprune_nb.config import ConfigError, get_preset, override
from genprune_nb.connectome.wiring import Connectome
from genprune_nb.model.gpt import GPT, flops_per_token
from genprune_nb.study import bits, generations
from genprune_nb.study.generations import parse_condition, run_inner_loop, run_outer_loop
from genprune_nb.study.layout import StudyLayout
from genprune_nb.training.checkpoint import latest_checkpoint, list_checkpoints
from genprune_nb.training.distill import Teacher, distillation_loss
from genprune_nb.training.provenance import ProvenanceError

NEW = ("TrainedSparse", "TrainedDense", "Distilled")


# --- the distillation loss ----------------------------------------------------------------------------------------

def test_distillation_loss_equals_a_hand_computation_with_the_t_squared_factor():
    student = torch.tensor([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]])  # 1 sequence, 2 tokens, 3 ids
    teacher = torch.tensor([[[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]]])
    targets = torch.tensor([[1, 2]])
    ce = F.cross_entropy(student.view(-1, 3), targets.view(-1))
    alpha, T = 0.3, 2.0

    def softmax(row):
        e = [math.exp(v / T) for v in row]
        return [v / sum(e) for v in e]

    kl = 0.0
    for s_row, t_row in zip(student[0].tolist(), teacher[0].tolist()):
        p, q = softmax(t_row), softmax(s_row)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    kl /= 2  # the mean over the two tokens
    expected = (1 - alpha) * ce.item() + alpha * T ** 2 * kl
    assert distillation_loss(student, teacher, ce, alpha, T).item() == pytest.approx(expected, rel=1e-6)
    # T^2: the soft term alone at T = 4 is 16 x its KL
    soft = distillation_loss(student, teacher, ce, 1.0, 4.0) / 16
    assert soft.item() == pytest.approx(F.kl_div(F.log_softmax(student.view(-1, 3) / 4, -1),
                                                 F.softmax(teacher.view(-1, 3) / 4, -1), reduction="batchmean").item())


def test_alpha_zero_is_plain_cross_entropy_exactly_and_runs_no_teacher():
    student, ce = torch.randn(2, 4, 7), torch.tensor(1.2345)
    assert distillation_loss(student, torch.full((2, 4, 7), float("nan")), ce, 0.0, 2.0) is ce
    model = GPT(get_preset("smoke").model, seed=0)
    teacher = Teacher(model, 0.0, 2.0, "digest")
    called = []
    model.register_forward_hook(lambda *a: called.append(1))
    assert teacher.objective(torch.zeros(1, 4, dtype=torch.long), student, ce) is ce and not called


def test_the_condition_grammar_knows_the_transmission_conditions():
    assert parse_condition("TrainedSparse") == ("TrainedSparse", "magnitude")
    assert parse_condition("TrainedDense[attribution]") == ("TrainedDense", "attribution")
    assert parse_condition("Distilled", "random") == ("Distilled", "random")
    with pytest.raises(ValueError, match="TrainedSparse, TrainedDense, Distilled"):
        parse_condition("Telepathy")
    for bad in ("inner.distill_alpha=1.5", "inner.distill_temperature=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            override(get_preset("smoke"), [bad])


# --- the conditions on a smoke study ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(smoke_preset, tmp_path_factory):
    """The smoke outer loop (2 generations), then NoConnectome and the three new conditions for seed 0 through
    ``genprune inner --conditions``, watching every forward of TrainedSparse for a non-zero pruned weight."""
    study = StudyLayout(tmp_path_factory.mktemp("study"))
    run_outer_loop(smoke_preset, study, progress=False)
    masks = Connectome.load(study.final_connectome()).masks()
    forwards = {"checked": 0}
    original = GPT.forward

    def watched(model, *args, **kwargs):
        params = dict(model.named_parameters())
        if any(p.requires_grad for p in params.values()) and "TrainedSparse" in _training[0]:
            for name, mask in masks.items():
                assert torch.count_nonzero(params[name].detach()[~mask]) == 0, name
            forwards["checked"] += 1
        return original(model, *args, **kwargs)

    _training, original_train = [""], generations.train  # the run dir being trained

    def train(preset, run_dir, *args, **kwargs):
        _training[0] = str(run_dir)
        return original_train(preset, run_dir, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GPT, "forward", watched)
        mp.setattr(generations, "train", train)
        assert main(["inner", "--preset", "smoke", "--no-progress", "--device", "cpu", "--run-root", str(study.root),
                     "--set", f"data.tokens_dir={smoke_preset.data.tokens_dir}", "--set", "inner.seeds=0",
                     "--conditions", "NoConnectome", *NEW]) == 0
    assert forwards["checked"] > 0
    return study


def test_trained_sparse_starts_from_the_trained_survivors_and_keeps_pruned_weights_at_zero(smoke_preset, study):
    final = Connectome.load(study.final_connectome())
    trained = latest_checkpoint(study.generation(smoke_preset.outer.generations - 1)).weights()
    runs = list_checkpoints(study.inner_run("TrainedSparse", 0))
    assert [c.step for c in runs] == [0, 5, 10]
    start = runs[0].weights()
    for name, mask in final.masks().items():
        assert torch.equal(start[name][mask], trained[name][mask])  # exactly the trained values
        assert torch.equal(runs[-1].masks()[name], mask)
        for ckpt in runs:
            assert torch.count_nonzero(ckpt.weights()[name][~mask]) == 0
        assert not torch.equal(runs[-1].weights()[name][mask], trained[name][mask])  # and they trained


def test_trained_dense_loads_the_outer_model_unchanged(smoke_preset, study):
    trained = latest_checkpoint(study.generation(smoke_preset.outer.generations - 1)).weights()
    runs = list_checkpoints(study.inner_run("TrainedDense", 0))
    assert runs[0].step == 0 and runs[-1].masks() is None
    start = runs[0].weights()
    assert start.keys() == trained.keys() and all(torch.equal(start[n], trained[n]) for n in trained)


def test_distilled_starts_as_no_connectome_and_logs_the_teachers_cost(smoke_preset, study):
    none = list_checkpoints(study.inner_run("NoConnectome", 0))[0].weights()
    distilled = list_checkpoints(study.inner_run("Distilled", 0))[0].weights()
    assert all(torch.equal(none[n], distilled[n]) for n in none)
    from genprune_nb.study.curves import run_curve

    cost = run_curve(study.inner_run("Distilled", 0), "teacher_flops")
    per_token = flops_per_token(smoke_preset.model, smoke_preset.inner_train.seq_len) / 3
    assert len(cost) and (cost["teacher_flops"] == cost["tokens"] * per_token).all()


def test_the_frontier_counts_the_teachers_forward_flops(smoke_preset, study):
    from genprune_nb.analysis import bandwidth as stats
    from genprune_nb.analysis.efficiency import inner_curves_of

    curves = inner_curves_of(study, ["NoConnectome", "Distilled"])
    teacher = stats.teacher_flops_per_token(study, ["NoConnectome", "Distilled"])
    assert list(teacher) == ["Distilled"]
    compute = stats.with_compute(curves, smoke_preset, teacher)
    student = flops_per_token(smoke_preset.model, smoke_preset.inner_train.seq_len)
    ratio = (compute["compute"] / (compute["tokens"] * student))[compute["tokens"] > 0]
    by_condition = ratio.groupby(compute["condition"]).agg(["min", "max"])
    assert by_condition.loc["NoConnectome"].tolist() == [1.0, 1.0]
    assert by_condition.loc["Distilled"].tolist() == pytest.approx([4 / 3, 4 / 3])  # + a forward: a third of training
    front = stats.frontier(compute)
    assert set(front["condition"]) == {"NoConnectome", "Distilled"} and (front["n"] == 1).all()


def test_a_changed_teacher_or_setting_is_refused_on_resume(smoke_preset, study):
    for change, field in ((["inner.distill_temperature=3"], "start.distill.temperature"),
                          ([f"inner.distill_teacher={study.generation(1)}"], "start.teacher")):
        with pytest.raises(ProvenanceError, match=field):
            run_inner_loop(override(smoke_preset, change), study, conditions=("Distilled",), seeds=(0,),
                           progress=False)


def test_bits_transmitted_equal_a_hand_count(smoke_preset, study):
    m = smoke_preset.model
    weights = 2 * m.vocab_size * m.n_embd + m.n_layer * 12 * m.n_embd ** 2  # wte, lm_head, the blocks' matrices
    assert weights == 3_244_032
    final = Connectome.load(study.final_connectome())
    positions, survivors = 0.0, 0
    for mask in final.masks().values():
        n, k = mask.numel(), int(mask.sum())
        positions += n * (-(k / n) * math.log2(k / n) - (1 - k / n) * math.log2(1 - k / n))
        survivors += k
    assert 0 < survivors < weights
    file_bits = 8 * study.final_connectome().stat().st_size
    expected = {"Connectome": file_bits, "RandomConnectome": file_bits, "NoConnectome": 0.0,
                "TrainedSparse": positions + 32 * survivors, "TrainedDense": 32 * weights, "Distilled": 32 * weights}
    conditions = list(expected)
    rows = bits.bits_rows(smoke_preset, study, conditions, seeds=[0, 1])
    got = rows[rows["metric"] == "bits"].groupby("condition")["value"]
    assert (got.nunique() == 1).all()
    for condition, value in expected.items():
        assert got.first()[condition] == pytest.approx(value, rel=1e-12), condition
    teacher = rows[rows["metric"] == "needs_teacher"].groupby("condition")["value"].first()
    assert teacher.to_dict() == {c: float(c == "Distilled") for c in conditions}


# --- notebook 09 --------------------------------------------------------------------------------------------------

def test_notebook_09_runs_by_default_where_the_preset_names_its_conditions():
    from genprune_nb.study.pipeline import available_notebooks, runs_by_default

    assert "09_bandwidth" in available_notebooks()
    assert runs_by_default("09_bandwidth", get_preset("smoke"), {})
    assert runs_by_default("09_bandwidth", get_preset("cpu"), {})
    assert not runs_by_default("09_bandwidth", get_preset("tiny"), {})
    assert runs_by_default("09_bandwidth", get_preset("tiny"), {"conditions": ["Distilled"]})


def test_notebook_09_runs_headless_on_smoke_and_trains_only_what_is_missing(smoke_preset, study, tmp_path):
    import shutil

    import pandas as pd

    papermill = pytest.importorskip("papermill")
    from genprune_nb.study.pipeline import NOTEBOOKS_DIR

    root, figures = tmp_path / "study", tmp_path / "figures"
    shutil.copytree(study.root, root)  # its outer loop, NoConnectome and the new conditions: Connectome, Random left
    done = {p: p.stat().st_mtime for p in (root / "inner").glob("*/seed_0/checkpoints/step_*/state.json")}
    papermill.execute_notebook(
        NOTEBOOKS_DIR / "09_bandwidth.ipynb", tmp_path / "09.ipynb", kernel_name="python3", progress_bar=False,
        parameters={"preset": "smoke", "overrides": [f"data.tokens_dir={smoke_preset.data.tokens_dir}"],
                    "run_root": str(root), "figures_dir": str(figures), "device": "cpu", "progress": False,
                    "seeds": [0]})
    assert (figures / "09_bandwidth.png").stat().st_size > 0 and (figures / "09_training_frontier.png").exists()
    assert all(p.stat().st_mtime == t for p, t in done.items())  # nothing trained twice
    assert {p.name for p in (root / "inner").iterdir()} == {"Connectome", "RandomConnectome", "NoConnectome", *NEW}
    table = StudyLayout(root).results.load()
    stored = table[(table["task"] == bits.BITS_TASK) & (table["metric"] == "bits")]
    assert sorted(stored["condition"]) == sorted(["Connectome", "RandomConnectome", "NoConnectome", *NEW])

    from genprune_nb.analysis import bandwidth as stats
    from genprune_nb.analysis.efficiency import inner_curves_of

    summary = stats.bandwidth_summary(inner_curves_of(StudyLayout(root), list(stored["condition"])),
                                      stats.bits_by_condition(table))
    assert summary["condition"].iloc[0] == "NoConnectome" and summary["multiplier"].iloc[0] == 1.0
    assert summary.set_index("condition")["needs_teacher"].to_dict()["Distilled"]
    assert isinstance(summary, pd.DataFrame) and summary["val_loss"].notna().all()
