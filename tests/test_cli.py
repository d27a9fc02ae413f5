"""The genprune command: the main job end to end on the smoke preset, and clear errors."""
import errno
import io
import json
import shutil

import pytest
import torch

from genprune_nb.cli import main
from genprune_nb.config import ConfigError, get_preset
from genprune_nb.data.shards import list_shards, read_shard
from genprune_nb.tokenizer import EOT
from genprune_nb.training.checkpoint import latest_checkpoint


def test_prepare_then_train(tmp_path, external_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("GENPRUNE_DATA_DIR", str(external_data_dir))
    tokens = tmp_path / "tokens"
    common = ["--preset", "smoke", "--no-progress", "--set", f"data.tokens_dir={tokens}"]
    assert main(["prepare", *common]) == 0
    assert read_shard(list_shards(tokens, "english_prose", "val")[0])[0] == EOT
    assert len(list_shards(tokens, "english_prose", "small")) == 1
    written = {f: f.stat().st_mtime_ns for f in tokens.iterdir()}
    capsys.readouterr()
    assert main(["prepare", *common]) == 0  # prepared already: said so, nothing rewritten
    assert "already prepared" in capsys.readouterr().out
    assert {f: f.stat().st_mtime_ns for f in tokens.iterdir()} == written
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


def test_eval_scores_reading_times_and_brain_encoding_into_a_study(fake_study, tmp_path, capsys):
    """Every registered benchmark through one command, sized by the preset's eval budget as the smoke notebooks
    size them, so the rows land in the study's results under the notebooks' labels."""
    from genprune_nb.study.layout import StudyLayout

    (tmp_path / "inner").symlink_to(fake_study.root / "inner")  # the fake checkpoints, an empty results table
    assert main(["eval", "--task", "reading_times", "brain_encoding", "--preset", "smoke",
                 "--run-root", str(tmp_path), "--final-only", "--conditions", "Connectome", "--no-progress"]) == 0
    results = StudyLayout(tmp_path).results.load()
    assert set(results["task"]) == {"reading_times@stories=1,words=40", "brain_encoding@sentences=40"}
    reading = results[results["task"].str.startswith("reading_times")]
    assert len(reading) == 2 * 12 and set(reading["seed"]) == {0, 1} and set(reading["step"]) == {20}
    brain = results[(results["task"] == "brain_encoding@sentences=40") & (results["metric"] == "r")]
    assert sorted(brain["layer"].unique()) == list(range(get_preset("smoke").model.n_layer + 1))  # 0: embedding
    assert "pearson_r" in capsys.readouterr().out


def test_notebook_parameters_are_read_as_json_where_they_parse():
    from genprune_nb.cli import _notebook_parameter

    assert _notebook_parameter("limit=200") == ("limit", 200)
    assert _notebook_parameter("stories=[1, 2]") == ("stories", [1, 2])
    assert _notebook_parameter("device=cuda") == ("device", "cuda")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        _notebook_parameter("limit")


# --- clear errors: every package error and OSError is one line on stderr, exit code 2, no traceback ---------------


def one_error_line(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def resumable_run(smoke_preset, tmp_path_factory):
    """A smoke run stopped at step 2 of 3 with checkpoints at steps 1 and 2 (both resumable)."""
    run = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--preset", "smoke", "--no-progress", "--device", "cpu", "--run-dir", str(run),
                 *TRAIN_ARGS(smoke_preset), "--until", "2"]) == 0
    return run


def TRAIN_ARGS(preset) -> list[str]:
    sets = [f"data.tokens_dir={preset.data.tokens_dir}", "train.steps=3", "train.warmup_steps=1",
            "train.decay_steps=1", "train.val_every=0", "train.checkpoint_every=1"]
    return [a for s in sets for a in ("--set", s)]


def resume_argv(run, preset) -> list[str]:
    return ["train", "--preset", "smoke", "--no-progress", "--device", "cpu", "--run-dir", str(run),
            *TRAIN_ARGS(preset), "--resume"]


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt", "rng.pt", "state.json", "config.json"])
def test_a_truncated_checkpoint_file_is_named(damaged, resumable_run, smoke_preset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(resumable_run, run)
    file = run / "checkpoints" / "step_000002" / damaged
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    line = one_error_line(resume_argv(run, smoke_preset), capsys)
    assert str(file) in line and "damaged or truncated" in line


def test_a_missing_optimizer_state_names_the_runs_resumable_checkpoint(resumable_run, smoke_preset, tmp_path,
                                                                         capsys):
    run = tmp_path / "run"
    shutil.copytree(resumable_run, run)
    (run / "checkpoints" / "step_000002" / "optimizer.pt").unlink()
    line = one_error_line(resume_argv(run, smoke_preset), capsys)
    assert "step_000002 holds no optimizer state" in line
    assert "newest resumable checkpoint is step_000001" in line and "--overwrite" in line
    (run / "checkpoints" / "step_000001" / "optimizer.pt").unlink()
    line = one_error_line(resume_argv(run, smoke_preset), capsys)
    assert "nor does any other checkpoint of the run: restart it with --overwrite" in line
    assert "resume from the run's latest checkpoint" not in line  # the very checkpoint that lacks it


def test_resuming_with_another_model_shape_names_the_fields(resumable_run, smoke_preset, tmp_path):
    from genprune_nb.config import override
    from genprune_nb.model.gpt import GPT
    from genprune_nb.training.checkpoint import CheckpointError, restore_training_state

    model = GPT(override(smoke_preset, ["model.n_layer=3", "model.n_embd=64"]).model)
    with pytest.raises(CheckpointError, match=r"model.n_layer: 2 in the run, 3 now; model.n_embd: 32 in the run, "
                                              r"64 now"):
        restore_training_state(latest_checkpoint(resumable_run), model, torch.optim.AdamW(model.parameters()))


def test_evaluating_a_truncated_checkpoint_names_the_file(fake_study, tmp_path, capsys):
    ckpt = tmp_path / "step_000020"
    shutil.copytree(fake_study.inner_run("Connectome", 0) / "checkpoints" / "step_000020", ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\x10\x00")
    line = one_error_line(["eval", "--checkpoint", str(ckpt), "--task", "blimp", "--limit", "1", "--no-progress"],
                          capsys)
    assert str(ckpt / "model.safetensors") in line


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),  # write() / fsync() name no file
    RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: "
                 "file write failed"),  # torch.save on a full disk
])
def test_a_full_disk_names_the_path(failure, smoke_preset, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise failure

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    line = one_error_line(["train", "--preset", "smoke", "--no-progress", "--device", "cpu", "--run-dir", str(run),
                           *TRAIN_ARGS(smoke_preset)], capsys)
    assert "No space left on device" in line and str(run / "checkpoints" / "step_000001") in line
    assert not list((run / "checkpoints").glob(".step_*"))  # the half-written checkpoint is gone


def test_a_full_disk_while_logging_names_the_metrics_file(tmp_path, monkeypatch):
    from genprune_nb.training.runlog import RunLog

    class FullFile(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("builtins.open", lambda *args, **kwargs: FullFile())
    with pytest.raises(OSError, match="No space left on device") as caught:
        RunLog(tmp_path / "metrics.jsonl").append({"step": 1})
    assert caught.value.filename == str(tmp_path / "metrics.jsonl")


@pytest.mark.parametrize("assignment, message", [
    ("train.warmup_steps=1e-3", "train.warmup_steps='1e-3': expected an integer"),  # was read as 0, then trained
    ("inner.seeds=a,b", "inner.seeds='a,b': item 0 ('a'): expected an integer"),
    ("train.shuffle=maybe", "train.shuffle='maybe': expected a bool"),
])
def test_set_never_coerces(assignment, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("genprune_nb.training.loop.train", _must_not_run)
    line = one_error_line(["train", "--preset", "smoke", "--run-dir", str(tmp_path / "run"), "--set", assignment],
                          capsys)
    assert message in line and not (tmp_path / "run").exists()


def _must_not_run(*args, **kwargs):
    raise AssertionError("the command started work before its input was checked")


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.stepz=1"], "no field 'stepz'"),
    (["--set", "train.steps=1e-3"], "train.steps='1e-3': expected an integer"),
    (["--only", "99"], "unknown notebook(s) ['99']"),
])
def test_reproduce_checks_its_input_before_starting_a_kernel(argv, message, tmp_path, monkeypatch, capsys):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", _must_not_run)
    line = one_error_line(["reproduce", "--preset", "smoke", "--run-root", str(tmp_path / "study"),
                           "--figures-dir", str(tmp_path / "figs"), *argv], capsys)
    assert message in line


def test_reproduce_names_a_failing_notebook(tmp_path, monkeypatch, capsys):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def failing(source, out, **kwargs):
        raise PapermillExecutionError(3, 4, "train(...)", "ShardError", "x.bin: bad magic", ["Traceback", "..."])

    monkeypatch.setattr(papermill, "execute_notebook", failing)
    line = one_error_line(["reproduce", "--preset", "smoke", "--run-root", str(tmp_path / "study"),
                           "--figures-dir", str(tmp_path / "figs"), "--only", "01"], capsys)
    assert "notebook 01_outer_loop failed: ShardError: x.bin: bad magic" in line
    assert str(tmp_path / "study" / "notebooks" / "01_outer_loop.ipynb") in line


@pytest.mark.parametrize("command, option, role", [
    (["train", "--preset", "smoke"], "--run-dir", "run dir"),
    (["outer", "--preset", "smoke"], "--run-root", "study folder"),
    (["inner", "--preset", "smoke"], "--run-root", "study folder"),
    (["reproduce", "--preset", "smoke", "--figures-dir", "{tmp}/figs"], "--run-root", "study folder"),
    (["reproduce", "--preset", "smoke", "--run-root", "{tmp}/study"], "--figures-dir", "figures folder"),
    (["eval", "--preset", "smoke", "--task", "blimp"], "--run-root", "study folder"),
])
def test_output_folders_are_checked_writable_before_the_first_step(command, option, role, tmp_path, monkeypatch,
                                                                     capsys):
    command = [a.format(tmp=tmp_path) for a in command]
    import papermill

    for target in ("genprune_nb.training.loop.train", "genprune_nb.study.generations.run_outer_loop",
                   "genprune_nb.study.generations.run_inner_loop", "genprune_nb.evals.evaluate"):
        monkeypatch.setattr(target, _must_not_run)
    monkeypatch.setattr(papermill, "execute_notebook", _must_not_run)
    (tmp_path / "a_file").write_text("not a folder")
    folder = tmp_path / "a_file" / "out"  # root ignores permission bits; a path through a file fails for anyone
    line = one_error_line([*command, option, str(folder)], capsys)
    assert f"{role} {folder} is not writable" in line


def test_eval_out_is_checked_writable(fake_study, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("genprune_nb.evals.evaluate", _must_not_run)
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "results.csv"
    line = one_error_line(["eval", "--checkpoint", str(fake_study.inner_run("Connectome", 0)), "--task", "blimp",
                           "--out", str(out)], capsys)
    assert f"folder of --out {out.parent} is a file, not a folder" in line


def test_bugs_keep_their_traceback_and_the_traceback_can_be_asked_for(tmp_path, monkeypatch, capsys):
    def buggy(args):
        raise TypeError("a bug")

    monkeypatch.setattr("genprune_nb.cli.cmd_presets", buggy)
    with pytest.raises(TypeError, match="a bug"):
        main(["presets"])
    with pytest.raises(ConfigError, match="unknown preset"):
        main(["--traceback", "train", "--preset", "gpt5"])
    monkeypatch.setenv("GENPRUNE_TRACEBACK", "1")
    with pytest.raises(ConfigError, match="unknown preset"):
        main(["train", "--preset", "gpt5"])


def test_a_busy_run_dir_is_one_line(monkeypatch, capsys):
    """The lock's error (a GenpruneError, like every error the package raises) is one line; several lines are
    joined into one."""
    from genprune_nb.storage.locking import LockBusyError

    def busy(args):
        raise LockBusyError("run dir x is in use\n  by pid 1")

    monkeypatch.setattr("genprune_nb.cli.cmd_presets", busy)
    assert one_error_line(["presets"], capsys) == "genprune presets: error: run dir x is in use by pid 1"


def test_the_study_root_is_built_in_one_place(tmp_path):
    """runs/<preset> by default, --run-root / run_root when given; the CLI, the pipeline and the notebooks agree."""
    from pathlib import Path

    from genprune_nb.config import get_preset
    from genprune_nb.study import pipeline
    from genprune_nb.study.layout import StudyLayout

    smoke = get_preset("smoke")
    assert StudyLayout.of(smoke) == StudyLayout.of("smoke") == StudyLayout(Path("runs") / "smoke")
    assert StudyLayout.of(smoke, tmp_path / "mine").root == tmp_path / "mine"
    assert StudyLayout.of(smoke).plain_run == Path("runs") / "smoke" / "train"  # genprune train's default
    assert pipeline.context("smoke", device="cpu").study == StudyLayout.of(smoke)
    assert pipeline.context("smoke", run_root=str(tmp_path), device="cpu").study == StudyLayout(tmp_path)
