"""Kills between any two filesystem operations of a save, then resume: nothing complete is lost, the result is the same.

A ``Faults`` object makes the k-th operation that changes the disk raise ``Killed`` and every operation after it
too (the process is dead: not even its cleanup handlers reach the disk). Each test tries k = 1, 2, ... until the
run completes without reaching k, resumes after every kill and compares with an uninterrupted run of the same
process configuration, so bitwise equality is valid.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genprune_nb.config import get_preset, override
from genprune_nb.model.gpt import GPT
from genprune_nb.storage.locking import LOCK_FILE
from genprune_nb.study import curves
from genprune_nb.study import generations as generations_mod
from genprune_nb.study.generations import run_outer_loop
from genprune_nb.study.layout import StudyLayout
from genprune_nb.training import checkpoint as checkpoint_mod
from genprune_nb.training.checkpoint import clean_stale, latest_checkpoint, list_checkpoints, save_checkpoint
from genprune_nb.training.loop import train

# the smoke preset shrunk to milliseconds a step (the 50k head dominates), for the hundreds of runs below
SHRUNK = {"model.n_layer": 1, "model.n_head": 1, "model.n_embd": 8, "model.block_size": 16, "train.batch_size": 2,
          "train.micro_batch_size": 2, "train.seq_len": 16, "train.val_tokens": 32, "train.warmup_steps": 1,
          "train.decay_steps": 1, "train.steps": 2}
TINY = override(get_preset("smoke"), {**SHRUNK, "train.val_every": 1, "train.checkpoint_every": 1,
                                      "train.log_every": 1, "train.keep_last": 1, "train.keep_checkpoints": (0,)})
TIMING = ("tokens_per_s", "mfu")  # the only fields of a metrics record that differ between identical runs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for the hundreds of millisecond trainings below: more only add overhead (4x on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Killed(BaseException):
    """The simulated kill -9 (a BaseException, so that no ``except Exception`` survives it)."""


class Faults:
    """Counts the operations that change the disk and kills the process before the ``kill_at``-th.

    Counted: os.replace / rename / unlink / remove / mkdir / rmdir (so also pathlib's, tempfile's and the unlinks
    inside shutil.rmtree), shutil.rmtree itself, every ``open`` for writing, torch.save and safetensors'
    save_file. ``pointer`` is the text of ``watch`` (a ``latest`` file) at the moment of the kill.
    """

    def __init__(self, monkeypatch, kill_at: int | None = None, watch: Path | None = None):
        self.kill_at, self.watch = kill_at, watch
        self.count, self.dead, self.pointer = 0, False, None
        for module, name in [(os, "replace"), (os, "rename"), (os, "unlink"), (os, "remove"), (os, "mkdir"),
                             (os, "rmdir"), (shutil, "rmtree"), (torch, "save"), (checkpoint_mod, "save_file")]:
            monkeypatch.setattr(module, name, self._counted(getattr(module, name), name))
        for module in (builtins, io):
            monkeypatch.setattr(module, "open", self._counted_open(module.open))

    def _operation(self, what: str) -> None:
        self.count += 1
        if not self.dead and self.kill_at is not None and self.count >= self.kill_at:
            self.dead = True
            if self.watch is not None and self.watch.exists():
                self.pointer = self.watch.read_text().strip()
        if self.dead:
            raise Killed(f"killed before filesystem operation {self.count} ({what})")

    def _counted(self, fn, name):
        def wrapper(*args, **kwargs):
            if not (name == "mkdir" and os.path.isdir(args[0])):  # a no-op: a kill before it is one after the last
                self._operation(name)
            return fn(*args, **kwargs)
        return wrapper

    def _counted_open(self, fn):
        def wrapper(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+"):
                self._operation(f"open {mode}")
            return fn(file, mode, *args, **kwargs)
        return wrapper


def hidden_leftovers(*folders: Path) -> list[Path]:
    """Hidden files a killed save left behind; the run's lock file stays by design (its pid names the writer)."""
    return [p for f in folders if f.is_dir() for p in f.iterdir()
            if p.name.startswith(".") and p.name != LOCK_FILE]


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return latest_checkpoint(run_dir).weights()  # dense: a masked run stores its survivors only


def assert_same_run(run: Path, ref: Path) -> None:
    """Bitwise the same final weights, the same metrics records (one per step / val point), the same checkpoints."""
    a, b = weights(run), weights(ref)
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    assert records(run) == records(ref)
    assert [c.step for c in list_checkpoints(run)] == [c.step for c in list_checkpoints(ref)]
    assert not hidden_leftovers(run, run / "checkpoints")


@pytest.fixture(scope="module")
def tiny_shards(phrase_shards):
    """Train and val shards of a learnable token stream (a repeated random phrase)."""
    return phrase_shards("tiny", length=61, repeats=20, n_train=1000)


def tiny_masks(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) < 0.5
            for n, p in GPT(TINY.model).named_parameters() if p.dim() == 2}


def test_resume_from_step_0_neither_revalidates_nor_resaves(tmp_path, tiny_shards):
    run = tmp_path / "run"
    train(TINY, run, until=0, progress=False, **tiny_shards)  # a session that ended right after step 0's checkpoint
    step0 = run / "checkpoints" / "step_000000"
    written = lambda: {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in step0.iterdir()}
    before, inode = written(), step0.stat().st_ino
    train(TINY, run, resume=True, progress=False, **tiny_shards)
    assert step0.stat().st_ino == inode  # the very same directory, not a re-saved copy
    before.pop("optimizer.pt")  # a kept step that is no longer the latest loses its optimizer moments
    assert written() == before
    ref = train(TINY, tmp_path / "straight", progress=False, **tiny_shards).run_dir
    assert [r["step"] for r in records(run) if "val_loss" in r] == [0, 1, 2]
    assert_same_run(run, ref)


def test_resaving_the_latest_checkpoint_survives_a_kill_between_any_two_operations(tmp_path, monkeypatch):
    """The directory ``latest`` names is replaced (an overwritten run's step): after a kill at any operation
    ``latest`` loads, with all of the old or all of the new weights."""
    old, new = GPT(TINY.model, seed=1), GPT(TINY.model, seed=2)
    versions = [checkpoint_mod.model_state(m) for m in (old, new)]
    k = 0
    while True:
        k += 1
        run = tmp_path / f"k{k}"
        save_checkpoint(run, 5, model=old, preset=TINY)
        with monkeypatch.context() as m:
            faults = Faults(m, kill_at=k)
            try:
                save_checkpoint(run, 5, model=new, preset=TINY)
            except Killed:
                pass
        ckpt = latest_checkpoint(run)
        saved = load_file(ckpt.path / "model.safetensors")
        assert any(all(torch.equal(saved[n], v[n]) for n in v) for v in versions), f"kill at operation {k}"
        clean_stale(run)
        assert not hidden_leftovers(run, run / "checkpoints"), f"kill at operation {k}"
        assert latest_checkpoint(run).step == 5
        if not faults.dead:
            assert all(torch.equal(saved[n], versions[1][n]) for n in saved)
            break
    assert k > 10  # the save was interrupted at each of its operations


def test_training_survives_a_kill_before_each_filesystem_operation(tmp_path, tiny_shards, monkeypatch):
    masks = tiny_masks()
    ref = train(TINY, tmp_path / "ref", masks=masks, progress=False, **tiny_shards).run_dir
    k = 0
    while True:
        k += 1
        run = tmp_path / f"k{k}"
        with monkeypatch.context() as m:
            faults = Faults(m, kill_at=k, watch=run / "checkpoints" / "latest")
            try:
                train(TINY, run, masks=masks, progress=False, **tiny_shards)
            except Killed:
                pass
        if not faults.dead:
            assert_same_run(run, ref)
            break
        latest = latest_checkpoint(run)  # recovers what the kill left half-renamed
        assert (latest and latest.path.name) == faults.pointer, f"kill at operation {k}: latest moved"
        if latest is not None:
            assert latest.load_model().config == TINY.model
            # resumable, or finished (its final checkpoint keeps no moments, and a resume changes nothing)
            assert (latest.path / "optimizer.pt").exists() or latest.step == TINY.train.steps
            assert (run / "checkpoints" / "step_000000" / "state.json").exists()  # a kept step is never lost
        train(TINY, run, masks=masks, resume=True, progress=False, **tiny_shards)  # as the inner loop resumes
        assert_same_run(run, ref)
        shutil.rmtree(run)
    assert k > 40  # every operation of the 3 checkpoint saves, their pruning and the logs was interrupted once


@pytest.fixture(scope="module")
def outer_runs(smoke_preset, tmp_path_factory):
    """An uninterrupted 2-generation outer loop, and one killed just before pruning its last generation."""
    preset = override(smoke_preset, {**SHRUNK, "train.checkpoint_every": 0, "train.val_every": 0})
    ref = StudyLayout(tmp_path_factory.mktemp("outer_ref"))
    run_outer_loop(preset, ref, progress=False)
    base = StudyLayout(tmp_path_factory.mktemp("outer_base"))
    prune = generations_mod._prune_generation

    def killed_at_last_generation(preset, study, g, *args, **kwargs):
        if g == preset.outer.generations - 1:
            raise Killed("killed before pruning")
        return prune(preset, study, g, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(generations_mod, "_prune_generation", killed_at_last_generation)
        with pytest.raises(Killed):
            run_outer_loop(preset, base, progress=False)
    return preset, ref, base


def assert_same_outer_loop(study: StudyLayout, ref: StudyLayout, generations: int) -> None:
    assert study.final_connectome().read_bytes() == ref.final_connectome().read_bytes()
    for g in range(generations):
        assert study.connectome(g).read_bytes() == ref.connectome(g).read_bytes(), g
        summary = json.loads((study.generation(g) / "generation.json").read_text())
        assert summary == json.loads((ref.generation(g) / "generation.json").read_text()), g
        assert not (latest_checkpoint(study.generation(g)).path / "optimizer.pt").exists(), g
        run = study.generation(g)
        assert not hidden_leftovers(run, run / "checkpoints"), g
    assert not hidden_leftovers(study.outer())


def test_lost_generation_summary_is_rebuilt(outer_runs, tmp_path):
    preset, ref, _ = outer_runs
    study = StudyLayout(tmp_path / "study")
    shutil.copytree(ref.root, study.root)
    (study.generation(1) / "generation.json").unlink()  # a kill right after generation 1's connectome was saved
    run_outer_loop(preset, study, progress=False)
    assert_same_outer_loop(study, ref, preset.outer.generations)
    assert curves.generation_summaries(study)["generation"].tolist() == [0, 1]


def test_pruning_a_generation_survives_a_kill_before_each_filesystem_operation(outer_runs, tmp_path, monkeypatch):
    preset, ref, base = outer_runs
    last = preset.outer.generations - 1
    k = 0
    while True:
        k += 1
        study = StudyLayout(tmp_path / f"k{k}")
        shutil.copytree(base.root, study.root)
        with monkeypatch.context() as m:
            faults = Faults(m, kill_at=k)
            try:
                run_outer_loop(preset, study, progress=False)
            except Killed:
                pass
        assert latest_checkpoint(study.generation(last)).step == preset.train.steps, f"kill at operation {k}"
        if faults.dead:
            run_outer_loop(preset, study, progress=False)
        assert_same_outer_loop(study, ref, preset.outer.generations)
        shutil.rmtree(study.root)
        if not faults.dead:
            break
    assert k > 10  # the connectome file, its summary, the optimizer drop and the final copy were each interrupted


def test_leftovers_of_killed_saves_are_removed_when_the_run_starts_again(tmp_path, tiny_shards):
    run = tmp_path / "run"
    train(TINY, run, until=1, progress=False, **tiny_shards)
    half = run / "checkpoints" / ".step_000002.x1y2.tmp"  # a killed save's half-written checkpoint
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 64)
    (run / ".metrics.jsonl.abc.tmp").write_text("{")
    aside = run / "checkpoints" / ".step_000001.old"  # a killed replacement's moved-aside copy, already replaced
    shutil.copytree(run / "checkpoints" / "step_000001", aside)
    train(TINY, run, resume=True, progress=False, **tiny_shards)
    assert not hidden_leftovers(run, run / "checkpoints")
