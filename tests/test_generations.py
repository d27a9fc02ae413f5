"""The outer loop (2 generations of the smoke preset) and the inner loop with its three conditions."""
import errno
import json
import shutil
import warnings

import pandas as pd
import pytest
import torch

from genprune_nb.connectome.pruning import prune_by
from genprune_nb.connectome.wiring import Connectome
from genprune_nb.model.gpt import GPT
from genprune_nb.study import curves
from genprune_nb.study.generations import inner_keep_steps, run_criteria, run_inner_loop, run_outer_loop
from genprune_nb.study.layout import StudyLayout
from genprune_nb.training.checkpoint import latest_checkpoint, list_checkpoints


class ForwardWatch:
    """Checks, at every forward of every GPT, that the watched masks' pruned weights are exactly 0.0."""

    def __init__(self, monkeypatch):
        self.masks: dict[str, torch.Tensor] | None = None
        self.forwards = 0
        original = GPT.forward

        def watched(model, *args, **kwargs):
            if self.masks is not None:
                params = dict(model.named_parameters())
                for name, mask in self.masks.items():
                    assert torch.count_nonzero(params[name].detach()[~mask]) == 0, name
                self.forwards += 1
            return original(model, *args, **kwargs)

        monkeypatch.setattr(GPT, "forward", watched)


@pytest.fixture(scope="module")
def outer(smoke_preset, tmp_path_factory):
    study = StudyLayout(tmp_path_factory.mktemp("study"))
    final = run_outer_loop(smoke_preset, study, progress=False)
    return study, final


def test_two_generations_prune_to_0_8_squared_with_signed_constants(smoke_preset, outer):
    study, final = outer
    assert smoke_preset.outer.generations == 2 and smoke_preset.outer.ties == "authors"
    # the authors' tie rule: floor(0.2 n) sets a threshold, ties at it survive. Block tensors (trained, no ties) keep
    # at least 0.64 (floor), hardly more; wte rows of tokens the smoke corpus never shows get no gradient, so they
    # keep tied magnitudes after the re-init and survive at the threshold: wte keeps far more
    for name, s in final.signs.items():
        extra = int(s.count_nonzero()) - 0.64 * s.numel()
        if name == "transformer.wte.weight":
            assert extra > 0.05 * s.numel(), name
        else:
            assert -0.5 <= extra <= 1e-4 * s.numel() + 2, name
    gen0, trained = Connectome.load(study.connectome(0)), latest_checkpoint(study.generation(1)).load_model()
    expected = prune_by("magnitude", trained.state_dict(), gen0.masks(), 0.2, ties="authors")
    assert all(torch.equal(final.masks()[n], expected[n]) for n in expected)
    # survivors of generation 1 carry the sign of generation 1's trained weights, scaled by c = 0.02
    trained = latest_checkpoint(study.generation(1)).load_model().state_dict()
    state = final.init_state(smoke_preset.model, seed=0)
    for name, s in final.signs.items():
        alive = s != 0
        assert torch.equal(s[alive].float(), torch.sign(trained[name][alive])), name
        assert set(state[name][alive].abs().unique().tolist()) == {torch.tensor(0.02).item()}
        assert torch.count_nonzero(state[name][~alive]) == 0
    summary = json.loads((study.generation(1) / "generation.json").read_text())
    size = study.connectome(1).stat().st_size
    assert summary["file_bits_per_weight"] == pytest.approx(8 * size / final.n_weights)
    assert summary["density"] == pytest.approx(final.density()) and summary["density"] > 0.64
    assert summary["entropy_bits_per_weight"] < summary["file_bits_per_weight"]
    for g in (0, 1):  # a pruned generation keeps its final weights, without optimizer moments
        assert [c.step for c in list_checkpoints(study.generation(g))] == [smoke_preset.train.steps]
        assert not (latest_checkpoint(study.generation(g)).path / "optimizer.pt").exists()


def test_pruned_weights_are_zero_at_every_forward_of_the_next_generation(smoke_preset, tmp_path, monkeypatch, outer):
    study, _ = outer
    watch = ForwardWatch(monkeypatch)
    gen0 = Connectome.load(study.connectome(0))
    watch.masks = gen0.masks()
    # generation 1 again, in a fresh study that already holds generation 0
    fresh = StudyLayout(tmp_path)
    fresh.generation(0).mkdir(parents=True)
    fresh.connectome(0).write_bytes(study.connectome(0).read_bytes())
    run_outer_loop(smoke_preset, fresh, progress=False)
    assert watch.forwards >= smoke_preset.train.steps * 2  # two micro-steps per step, plus validation
    assert all(torch.equal(a, b) for a, b in zip(Connectome.load(fresh.connectome_file).signs.values(),
                                                  Connectome.load(study.connectome_file).signs.values()))


def test_outer_loop_killed_mid_generation_resumes_to_the_same_connectome(smoke_preset, tmp_path, monkeypatch, outer):
    study, final = outer
    interrupted = StudyLayout(tmp_path)
    calls = {"n": 0}
    original = GPT.forward
    cfg = smoke_preset.train
    accum, val_batches = cfg.grad_accum_steps(1), cfg.val_tokens // (cfg.micro_batch_size * cfg.seq_len)
    per_generation = cfg.steps * accum + (cfg.steps // cfg.val_every) * val_batches
    kill_at = per_generation + 12 * accum + val_batches  # generation 1, step 12: past its step-10 checkpoint

    def dying(model, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("killed")
        return original(model, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", dying)
    with pytest.raises(KeyboardInterrupt):
        run_outer_loop(smoke_preset, interrupted, progress=False)
    monkeypatch.undo()
    assert interrupted.connectome(0).exists() and not interrupted.connectome(1).exists()
    assert latest_checkpoint(interrupted.generation(1)).step == 10
    resumed = run_outer_loop(smoke_preset, interrupted, progress=False)
    for name in final.signs:
        assert torch.equal(resumed.signs[name], final.signs[name]), name


def test_inner_loop_conditions(smoke_preset, outer, monkeypatch):
    study, final = outer
    watch = ForwardWatch(monkeypatch)
    watch.masks = final.masks()
    run_inner_loop(smoke_preset, study, conditions=("Connectome",), progress=False)
    assert watch.forwards > 0
    watch.masks = None
    refs = run_inner_loop(smoke_preset, study, progress=False)
    keep = inner_keep_steps(smoke_preset)
    assert keep == (0, 5, 10)
    assert {(r.condition, r.seed) for r in refs} == {(c, s) for c in ("Connectome", "RandomConnectome",
                                                                     "NoConnectome") for s in (0, 1)}
    assert sorted({r.step for r in refs}) == list(keep)
    conn = latest_checkpoint(study.inner_run("Connectome", 0))
    rand = latest_checkpoint(study.inner_run("RandomConnectome", 0))
    none = latest_checkpoint(study.inner_run("NoConnectome", 0))
    conn_masks, rand_masks = conn.masks(), rand.masks()
    assert none.masks() is None  # dense
    for name, mask in final.masks().items():
        assert torch.equal(conn_masks[name], mask)
        assert int(rand_masks[name].sum()) == int(mask.sum()) and not torch.equal(rand_masks[name], mask)
        assert torch.count_nonzero(conn.load_model().state_dict()[name][~mask]) == 0
    # seeds differ (data order, random control), a re-run skips finished runs
    assert not torch.equal(rand_masks["lm_head.weight"],
                           latest_checkpoint(study.inner_run("RandomConnectome", 1)).masks()["lm_head.weight"])
    step0 = [c for c in list_checkpoints(study.inner_run("Connectome", 0)) if c.step == 0][0]
    w0 = step0.load_model().state_dict()["lm_head.weight"]
    assert set(w0.abs().unique().tolist()) == {0.0, torch.tensor(0.02).item()}
    before = [c.path.stat().st_mtime for c in list_checkpoints(study.inner_run("NoConnectome", 1))]
    run_inner_loop(smoke_preset, study, progress=False)
    assert before == [c.path.stat().st_mtime for c in list_checkpoints(study.inner_run("NoConnectome", 1))]

    # the loop wrote its val-loss curve rows itself: what notebook 02 wrote before (Figure 1B-i from the CLI too)
    expected = curves.val_loss_rows(study, n=smoke_preset.inner_train.val_tokens)
    written = study.results.load()
    written = written[written["task"] == curves.VAL_LOSS_TASK][list(expected.columns)].reset_index(drop=True)
    assert len(expected) == 2 * 3 * 3 and (expected["n"] == smoke_preset.inner_train.val_tokens).all()
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)


def test_other_criteria_share_generation_0_and_feed_the_inner_loop(smoke_preset, outer):
    from genprune_nb.config import override
    from genprune_nb.study.generations import parse_condition
    from genprune_nb.training.runlog import RunLog

    study, final = outer
    counts = {n: int(s.count_nonzero()) for n, s in final.signs.items()}
    floor_counts = {}  # the authors' rule without ties: floor(0.2 n) go per generation
    for name, s in final.signs.items():
        n = s.numel()
        for _ in range(2):
            n -= int(0.2 * n)
        floor_counts[name] = n
    dense = latest_checkpoint(study.generation(0)).load_model().state_dict()
    for criterion in ("random", "attribution"):
        conn = run_outer_loop(smoke_preset, study, criterion=criterion, progress=False)
        assert study.final_connectome(criterion) == study.root / f"outer_{criterion}" / "connectome.gpc"
        assert conn.meta["criterion"] == criterion
        kept = {n: int(s.count_nonzero()) for n, s in conn.signs.items()}
        if criterion == "random":  # continuous scores: no ties, so floor(0.2 n) per generation exactly
            assert kept == floor_counts
        assert all(kept[n] >= floor_counts[n] for n in counts)  # ties (exact zeros of attribution) survive
        assert any(not torch.equal(conn.signs[n], final.signs[n]) for n in counts)
        shared = latest_checkpoint(study.generation(0, criterion)).load_model().state_dict()
        assert all(torch.equal(shared[n], dense[n]) for n in dense)  # generation 0 was not trained again
        source, linked = (latest_checkpoint(study.generation(0, c)).path for c in ("magnitude", criterion))
        assert sorted(f.name for f in linked.iterdir()) == sorted(f.name for f in source.iterdir())
        assert all((linked / f.name).stat().st_ino == f.stat().st_ino for f in source.iterdir())  # hard links

    penalised = override(smoke_preset, {"outer.group_sparsity": 1e-3})
    conn = run_outer_loop(penalised, study, criterion="structured", progress=False)
    records = RunLog(study.generation(0, "structured") / "metrics.jsonl").records()
    assert any(r.get("group_penalty", 0) > 0 for r in records)  # trained with the group lasso, not shared
    fc = conn.masks()["transformer.h.0.mlp.c_fc.weight"]
    proj = conn.masks()["transformer.h.0.mlp.c_proj.weight"]
    assert torch.equal(fc.all(1), fc.any(1)) and torch.equal(fc.all(1), proj.all(0))
    assert int(fc.all(1).sum()) == 128 - 25 - 20  # whole units, floor(0.2 n): 128 -> 103 -> 83

    refs = run_inner_loop(smoke_preset, study, conditions=("Connectome[attribution]",), seeds=(0,), progress=False)
    assert {r.condition for r in refs} == {"Connectome[attribution]"}
    grown = latest_checkpoint(study.inner_run("Connectome[attribution]", 0)).masks()
    attribution = Connectome.load(study.final_connectome("attribution")).masks()
    assert all(torch.equal(grown[n], attribution[n]) for n in attribution)
    assert parse_condition("RandomConnectome[random]") == ("RandomConnectome", "random")
    assert parse_condition("Connectome", "structured") == ("Connectome", "structured")
    for bad in ("Connectome[snip]", "NoConnectome[random]", "Conectome"):
        with pytest.raises(ValueError, match="condition"):
            parse_condition(bad)
    with pytest.raises(FileNotFoundError, match="outer_structured"):
        run_inner_loop(override(smoke_preset, {"outer.criterion": "structured"}), StudyLayout(study.root / "x"),
                       conditions=("Connectome[structured]",), progress=False)


def test_generation_0_is_copied_where_it_cannot_be_linked(smoke_preset, outer, tmp_path, monkeypatch):
    from genprune_nb.config import override
    from genprune_nb.data.manifest import shard_files
    from genprune_nb.study import generations

    study = StudyLayout(tmp_path / "study")
    shutil.copytree(outer[0].generation(0), study.generation(0))

    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link", source)

    monkeypatch.setattr(generations.os, "link", cross_device)
    preset = override(smoke_preset, {"outer.criterion": "random"})
    start = generations._generation_start(preset, study, 0, "random")[1]
    fingerprint = generations._generation_fingerprint(preset, start, shard_files(preset, "large"),
                                                      shard_files(preset, "val"))
    assert generations._share_first_generation(preset, study, fingerprint)
    source, copied = (latest_checkpoint(study.generation(0, c)) for c in ("magnitude", "random"))
    names = sorted(f.name for f in source.path.iterdir())
    assert names == sorted(f.name for f in copied.path.iterdir()) and "model.safetensors" in names
    for name in names:
        a, b = source.path / name, copied.path / name
        assert a.stat().st_ino != b.stat().st_ino and a.read_bytes() == b.read_bytes(), name
    a, b = source.load_model().state_dict(), copied.load_model().state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_finished_inner_runs_are_kept_in_kept_dtype(smoke_preset, outer, tmp_path, monkeypatch):
    from genprune_nb.config import override
    from genprune_nb.storage.locking import LOCK_FILE
    from genprune_nb.training import loop

    assert smoke_preset.inner_train.kept_dtype == "float32"
    half_preset = override(smoke_preset, {"inner_train.kept_dtype": "bfloat16"})
    full, half = StudyLayout(tmp_path / "float32"), StudyLayout(tmp_path / "bfloat16")
    for preset, study in ((smoke_preset, full), (half_preset, half)):
        run_inner_loop(preset, study, connectome=outer[1], conditions=("Connectome",), seeds=(0,), progress=False)
    a, b = (list_checkpoints(s.inner_run("Connectome", 0)) for s in (full, half))
    assert [c.step for c in a] == [c.step for c in b] == list(inner_keep_steps(smoke_preset))
    assert [c.weights_dtype() for c in a] == ["float32"] * 3 and [c.weights_dtype() for c in b] == ["bfloat16"] * 3
    assert not any((c.path / "optimizer.pt").exists() for c in a + b)
    for ca, cb in zip(a, b):  # the same training; the bf16 run's checkpoints load as float32, rounded
        wa, wb = ca.load_model().state_dict(), cb.load_model().state_dict()
        assert all(wb[n].dtype == torch.float32 and torch.equal(wb[n], wa[n].to(torch.bfloat16).float()) for n in wa)
    inner = half.root / "inner"
    files = lambda: {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(inner.rglob("*"))
                     if p.is_file() and not p.name.endswith(LOCK_FILE)}
    before = files()
    monkeypatch.setattr(loop, "restore_training_state", lambda *a: pytest.fail("a finished run was loaded"))
    run_inner_loop(half_preset, half, connectome=outer[1], conditions=("Connectome",), seeds=(0,), progress=False)
    assert files() == before  # finished: nothing loaded, trained or cast again


def test_middle_generations_are_kept_in_kept_dtype_after_pruning(smoke_preset, tmp_path):
    from genprune_nb.config import override
    from genprune_nb.storage.locking import LOCK_FILE
    from genprune_nb.study.transmission import final_outer_checkpoint
    from genprune_nb.training.checkpoint import CheckpointError

    three = override(smoke_preset, {"outer.generations": 3})
    assert three.train.kept_dtype == "float32"
    full, half = StudyLayout(tmp_path / "float32"), StudyLayout(tmp_path / "bfloat16")
    run_outer_loop(three, full, progress=False)
    run_outer_loop(override(three, {"train.kept_dtype": "bfloat16"}), half, progress=False)
    finals = {s: [latest_checkpoint(s.generation(g)) for g in range(3)] for s in (full, half)}
    assert [c.weights_dtype() for c in finals[full]] == ["float32"] * 3
    assert [c.weights_dtype() for c in finals[half]] == ["float32", "bfloat16", "float32"]
    assert not any((c.path / "optimizer.pt").exists() for s in finals for c in finals[s])
    for g in range(3):  # pruned from the float32 weights: the same connectomes, the same trained weights
        assert full.connectome(g).read_bytes() == half.connectome(g).read_bytes(), g
        a, b = finals[full][g].load_model().state_dict(), finals[half][g].load_model().state_dict()
        cast = {n: t.to(torch.bfloat16).float() for n, t in a.items()} if g == 1 else a
        assert all(b[n].dtype == torch.float32 and torch.equal(b[n], cast[n]) for n in a), g
    files = lambda: {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(half.root.rglob("*"))
                     if p.is_file() and not p.name.endswith(LOCK_FILE)}
    before = files()
    run_outer_loop(override(three, {"train.kept_dtype": "bfloat16"}), half, progress=False)
    assert files() == before  # every generation is done: nothing trained, pruned or cast again
    with pytest.raises(CheckpointError, match="holds bfloat16 weights .*another study folder"):
        final_outer_checkpoint(override(three, {"outer.generations": 2}), half, "magnitude")


def test_run_criteria_runs_each_outer_loop_and_grows_the_other_criteria(smoke_preset, outer, tmp_path):
    with pytest.raises(ValueError, match="'snip'"):
        run_criteria(smoke_preset, tmp_path, ["random", "snip"], progress=False)
    assert not any(tmp_path.iterdir())  # refused before any run
    study, _ = outer
    shown = run_criteria(smoke_preset, study, ["magnitude", "random", "random"], progress=False)
    assert shown == ["Connectome", "RandomConnectome", "NoConnectome", "Connectome[random]"]
    assert Connectome.load(study.final_connectome("random")).meta["criterion"] == "random"
    assert latest_checkpoint(study.inner_run("Connectome[random]", 0)).step == smoke_preset.inner_train.steps
    assert latest_checkpoint(study.inner_run("Connectome[random]", 1)) is None  # one seed by default
    assert latest_checkpoint(study.inner_run("Connectome[magnitude]", 0)) is None  # the plain Connectome's
    grown = latest_checkpoint(study.inner_run("Connectome[random]", 0)).masks()
    random = Connectome.load(study.final_connectome("random")).masks()
    assert all(torch.equal(grown[n], random[n]) for n in random)
    assert run_criteria(smoke_preset, study, ["magnitude"], progress=False) == ["Connectome", "RandomConnectome",
                                                                                "NoConnectome"]


def test_each_generation_continues_reading_L_where_the_previous_stopped(smoke_preset, outer):
    from genprune_nb.training import provenance

    study, _ = outer
    assert smoke_preset.data.outer_stream == "continue"
    per_generation = smoke_preset.train.steps * smoke_preset.train.tokens_per_step
    end0 = latest_checkpoint(study.generation(0)).state()["loader"]
    end1 = latest_checkpoint(study.generation(1)).state()["loader"]
    assert (end0["shard"], end0["position"], end0["epoch"]) == (0, per_generation, 0)  # L: one shard, no wrap
    assert Connectome.load(study.connectome(0)).meta["stream_end"] == {"shard": 0, "position": per_generation,
                                                                       "epoch": 0}
    assert provenance.read(study.generation(1))["start"]["stream"] == {"shard": 0, "position": per_generation,
                                                                      "epoch": 0}
    assert (end1["shard"], end1["position"]) == (0, 2 * per_generation)  # generation 1 read the next tokens
    assert json.loads((study.generation(1) / "generation.json").read_text())["stream_end"]["position"] == \
        2 * per_generation


def test_restart_stream_and_the_old_tie_rule_are_other_recipes_and_refused(smoke_preset, outer, tmp_path):
    from genprune_nb.config import override
    from genprune_nb.study.generations import _recorded
    from genprune_nb.training.provenance import ProvenanceError

    study, _ = outer
    with pytest.raises(ProvenanceError, match=r"gen_1.*start\.stream: \{.*\} in the run, absent now"):
        run_outer_loop(override(smoke_preset, {"data.outer_stream": "restart"}), study, progress=False)
    with pytest.raises(ProvenanceError, match=r"gen_0.*outer\.ties: \"authors\" in the run, \"exact\" now"):
        run_outer_loop(override(smoke_preset, {"outer.ties": "exact"}), study, progress=False)
    # a connectome made before the tie rule was recorded was made with the exact rule
    old = Connectome.load(study.connectome(0))
    del old.meta["provenance"]["outer"]["ties"]
    old.save(tmp_path / "old.gpc")
    assert _recorded(tmp_path / "old.gpc")["outer"]["ties"] == "exact"


def test_too_little_L_for_the_continuing_stream_warns_with_the_counts(smoke_preset, tmp_path):
    from genprune_nb.config import override
    from genprune_nb.data.loader import TokenLoader
    from genprune_nb.data.manifest import shard_files
    from genprune_nb.study.generations import _check_stream_length

    large = shard_files(smoke_preset, "large")
    cfg = smoke_preset.train
    available = TokenLoader(large, cfg.micro_batch_size, cfg.seq_len).steps_per_epoch() * cfg.micro_batch_size * \
        cfg.seq_len
    generations = available // (cfg.steps * cfg.tokens_per_step) + 1  # one generation more than L holds
    preset = override(smoke_preset, {"outer.generations": generations})
    with pytest.warns(UserWarning, match=f"reads {generations * cfg.steps * cfg.tokens_per_step:,} tokens of L .* "
                                         f"holds {available:,}"):
        _check_stream_length(preset, large, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_stream_length(override(preset, {"data.outer_stream": "restart"}), large, 1)  # each reads one
