"""The genprune command: the main job end to end on the smoke preset, and clear errors."""
import json

import pytest

from genprune_nb.checkpoint import latest_checkpoint
from genprune_nb.cli import main
from genprune_nb.data.shards import list_shards, read_shard
from genprune_nb.tokenizer import EOT


def test_prepare_then_train(tmp_path, external_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("GENPRUNE_DATA_DIR", str(external_data_dir))
    tokens = tmp_path / "tokens"
    common = ["--preset", "smoke", "--no-progress", "--set", f"data.tokens_dir={tokens}"]
    assert main(["prepare", *common]) == 0
    assert read_shard(list_shards(tokens, "english_prose", "val")[0])[0] == EOT
    assert len(list_shards(tokens, "english_prose", "small")) == 1
    args = ["train", *common, "--run-dir", str(tmp_path / "run"), "--set", "train.steps=6",
            "--set", "train.warmup_steps=2", "--set", "train.decay_steps=2", "--set", "train.val_every=3"]
    assert main(args) == 0
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.step == 6 and ckpt.preset().train.steps == 6
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    assert "final val loss" in capsys.readouterr().out


def test_reproduce_runs_the_training_and_representation_notebooks_headlessly(tmp_path, smoke_preset, monkeypatch):
    """The main job on the smoke preset: data, outer loop, inner loop, representations and the paper's figures,
    each notebook executed by papermill (03-05 are executed on a fake study in their own tests)."""
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--preset", "smoke", "--no-progress", "--only", "00", "01", "02", "06", "07",
                 "--set", f"data.tokens_dir={smoke_preset.data.tokens_dir}"]) == 0
    executed = sorted(p.name for p in (tmp_path / "runs" / "smoke" / "notebooks").iterdir())
    assert executed == ["00_data.ipynb", "01_outer_loop.ipynb", "02_inner_loop.ipynb", "06_representations.ipynb",
                        "07_paper_figures.ipynb"]
    figures = {p.name for p in (tmp_path / "figures" / "smoke").iterdir()}
    assert {"00_corpora.png", "01_generation_val_loss.png", "01_tensor_density.png", "01_connectome_bits.png",
            "02_inner_val_loss.png", "06_criterion_densities.png", "06_inner_val_loss_by_criterion.png",
            "06_data_efficiency_val_loss.png", "06_effective_data_multiplier.png", "06_cka_generations.png",
            "06_cka_generations_diagonal.png", "06_cka_conditions.png", "06_cka_over_training.png",
            "07_figure1_b_i_val_loss.png"} <= figures
    study = tmp_path / "runs" / "smoke"
    for criterion_dir in ("outer", "outer_random", "outer_attribution", "outer_structured"):
        assert (study / criterion_dir / "connectome.gpc").exists()
    runs = {p.parent.name for p in (study / "inner").glob("*/seed_*")}
    assert runs == {"Connectome", "RandomConnectome", "NoConnectome", "Connectome[random]",
                    "Connectome[attribution]", "Connectome[structured]"}
    assert len(list((study / "inner").glob("*/seed_*"))) == 6 + 3  # criteria: the first seed only


def test_prepare_from_files(tmp_path, capsys):
    for i in range(3):
        (tmp_path / f"doc{i}.txt").write_text(f"Document number {i}. " * 50)
    out = tmp_path / "tokens"
    assert main(["prepare", "--no-progress", "--files", str(tmp_path / "doc*.txt"), "--set", f"data.tokens_dir={out}",
                 "--set", "data.shard_prefix=mine", "--set", "data.val_documents=1",
                 "--set", "data.small_documents=1"]) == 0
    assert len(list_shards(out, "mine", "train")) == 1
    assert "large-corpus (L)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--preset", "gpt5"], "unknown preset 'gpt5'"),
        (["train", "--preset", "smoke", "--set", "train.stepz=3"], "no field 'stepz'"),
        (["train", "--preset", "smoke", "--set", "model.n_head=3"], "not divisible"),
        (["prepare", "--files", "/nonexistent/*.txt"], "/nonexistent/*.txt"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_one_checkpoint_and_a_study(fake_study, tmp_path, capsys):
    ckpt = fake_study.inner_run("Connectome", 0)
    out = tmp_path / "results.csv"
    assert main(["eval", "--checkpoint", str(ckpt), "--task", "blimp", "--limit", "3", "--no-progress",
                 "--out", str(out)]) == 0
    assert "blimp@3" in capsys.readouterr().out
    assert "Connectome" in out.read_text()
    assert main(["eval", "--run-root", str(fake_study.root), "--task", "hellaswag", "--limit", "2", "--final-only",
                 "--conditions", "NoConnectome", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "hellaswag@2" in printed and "acc_norm" in printed and "RandomConnectome" not in printed


def test_notebook_parameters_are_read_as_json_where_they_parse():
    from genprune_nb.cli import _notebook_parameter

    assert _notebook_parameter("limit=200") == ("limit", 200)
    assert _notebook_parameter("stories=[1, 2]") == ("stories", [1, 2])
    assert _notebook_parameter("device=cuda") == ("device", "cuda")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        _notebook_parameter("limit")
