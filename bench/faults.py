"""The fault and bad-input catalogue of a study (issue 12), on the smoke preset.

    python bench/faults.py                                  # everything (~27 min on 2 busy CPU cores)
    python bench/faults.py --only kill --kills 3            # a category (or scenario names); 3 kills per command
    python bench/faults.py --only corruption input --keep   # keep the temporary folders for inspection

Every scenario drives the real command line (``python -m genprune_nb.cli``, ``--no-progress --device cpu``) in its
own temporary folder, over token shards prepared once with ``genprune prepare --preset smoke``:
  kill         kill -9 (the whole process tree) at seeded random moments during train / outer / inner / reproduce,
               re-run to completion, compare bitwise with an uninterrupted run;
  concurrency  a second train or outer on a busy run (the first held paused, so the interleaving is the same
               every time), two evals writing one results table at once;
  corruption   truncated or missing checkpoint files, a dangling ``latest``, stale temporary folders, damaged
               shards, connectome and results rows;
  input        bad ``--set`` values, unknown names, unwritable folders, a changed recipe over an existing run.
Outcomes:
  survived   the study ends correct (equal to an uninterrupted run where that applies) or, where the command was
             refused, nothing already written was lost;
  clear      where an error is due: exit code != 0, one short stderr line, no traceback, naming the file / field /
             row / pid the scenario expects (n/a where the right answer is to finish or recover);
  rows lost  results rows missing after concurrent writers.
Children run with ``--threads`` threads (default 1) so that resumed and uninterrupted runs compare bitwise.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_harness import (  # noqa: E402
    Digest,
    HarnessError,
    Run,
    Runner,
    compare,
    dangling_latest,
    judge_refusal,
    lost,
    results_rows,
    snapshot,
    summarize,
    truncate,
)

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ("kill", "concurrency", "corruption", "input")
TRAIN_SETS = ("train.checkpoint_every=5",)  # a save every 5 of the 20 steps: more saves for the kills to hit
EARLIER_COPIES = 100  # copies of the reference eval rows already in the table of "two eval on one study"
SECOND_WRITER_TIMEOUT = 300  # seconds a refused second writer may take; one that waits on a lock hits it


@dataclass
class Verdict:
    survived: bool
    clear: bool | None = None  # None: no error was due (the right answer was to finish or to recover)
    rows_lost: int = 0
    detail: str = ""
    error: str = ""  # the line a user reads: first line of stderr, or the exception line of a traceback


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: where it wrote, what it left, how long it took and when it began writing."""

    root: Path
    state: dict[str, Digest]
    seconds: float
    first_write: float


def shown_error(run: Run) -> str:
    line = run.error_line()
    return f"traceback: {line}" if run.traceback else line


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def only(state: dict[str, Digest], prefixes: Sequence[str]) -> dict[str, Digest]:
    return {k: v for k, v in state.items() if k.startswith(tuple(prefixes))}


class Lab:
    """Builds the shared inputs (token shards, uninterrupted reference runs) once, on first use, and the
    command lines of every scenario."""

    def __init__(self, root: Path, runner: Runner, kills: int, seed: int):
        self.root, self.runner, self.kills, self.seed = root, runner, kills, seed
        self._memo: dict[str, object] = {}
        self.tokens_state: dict[str, Digest] | None = None  # the shared shards as prepared, checked at the end

    def rng(self, scenario: str) -> random.Random:
        """One generator per scenario, so that --only does not change another scenario's draws."""
        return random.Random(f"{self.seed}:{scenario}")

    def _once(self, key: str, build: Callable[[], object]):
        if key not in self._memo:
            try:
                self._memo[key] = build()
            except Exception as e:  # remembered: every scenario that needs it reports the same harness error
                self._memo[key] = e if isinstance(e, HarnessError) else HarnessError(f"{key}: {e!r}")
        value = self._memo[key]
        if isinstance(value, Exception):
            raise value
        return value

    # ---- command lines
    @property
    def tokens(self) -> Path:
        return self._once("tokens", self._prepare)

    def preset_args(self, *sets: str, tokens: Path | None = None) -> list[str]:
        args = ["--preset", "smoke", "--no-progress", "--set", f"data.tokens_dir={tokens or self.tokens}"]
        for s in sets:
            args += ["--set", s]
        return args

    def train(self, run_dir: Path, *sets: str, tokens: Path | None = None) -> list[str]:
        return self.runner.cli("train", *self.preset_args(*TRAIN_SETS, *sets, tokens=tokens), "--device", "cpu",
                               "--run-dir", run_dir, "--resume")

    def loop(self, command: str, study: Path, *sets: str, extra: Sequence[str] = ()) -> list[str]:
        return self.runner.cli(command, *self.preset_args(*sets), "--device", "cpu", "--run-root", study, *extra)

    def reproduce(self, study: Path, *sets: str) -> list[str]:
        return self.runner.cli("reproduce", *self.preset_args(*sets), "--device", "cpu", "--run-root", study,
                               "--figures-dir", study.parent / "figures", "--only", "00", "01", "02")

    def eval(self, study: Path, task: str) -> list[str]:
        return self.runner.cli("eval", "--run-root", study, "--task", task, "--limit", "4", "--device", "cpu",
                               "--no-progress")

    # ---- shared inputs
    def _prepare(self) -> Path:
        folder = self.root / "shared"
        folder.mkdir(parents=True, exist_ok=True)
        tokens = folder / "tokens"
        run = self.runner.run(self.runner.cli("prepare", "--preset", "smoke", "--no-progress", "--set",
                                              f"data.tokens_dir={tokens}"), folder)
        if run.rc != 0:
            raise HarnessError(f"genprune prepare failed ({run.describe()}): {shown_error(run)}")
        self.tokens_state = snapshot(tokens)
        return tokens

    def _reference(self, name: str, setup: Callable[[Path], tuple[list[str], Path, Path]]) -> Reference:
        folder = self.root / "reference" / name
        folder.mkdir(parents=True)
        argv, out, watch = setup(folder)
        run = self.runner.run(argv, folder, watch=watch)
        if run.rc != 0:
            raise HarnessError(f"the uninterrupted {name} run failed ({run.describe()}): {shown_error(run)}")
        return Reference(out, snapshot(out), run.seconds, run.first_write or 0.0)

    def ref_train(self) -> Reference:
        def setup(folder):
            return self.train(folder / "run"), folder / "run", folder / "run"
        return self._once("reference train", lambda: self._reference("train", setup))

    def ref_outer(self) -> Reference:
        def setup(folder):
            study = folder / "study"
            return self.loop("outer", study), study, study / "outer"
        return self._once("reference outer", lambda: self._reference("outer", setup))

    def ref_inner(self) -> Reference:
        def setup(folder):
            study = copy(self.ref_outer().root, folder / "study")
            return self.loop("inner", study), study, study / "inner"
        return self._once("reference inner", lambda: self._reference("inner", setup))

    def ref_reproduce(self) -> Reference:
        def setup(folder):
            study = folder / "study"
            return self.reproduce(study), study, study / "notebooks"
        return self._once("reference reproduce", lambda: self._reference("reproduce", setup))

    def ref_eval(self) -> Reference:
        """The inner study scored for hellaswag@4, then mmlu@4, one eval after the other."""
        def build():
            folder = self.root / "reference" / "eval"
            study = copy(self.ref_inner().root, folder / "study")
            seconds = 0.0
            for task in ("hellaswag", "mmlu"):
                run = self.runner.run(self.eval(study, task), folder)
                if run.rc != 0:
                    raise HarnessError(f"the reference eval {task} failed ({run.describe()}): {shown_error(run)}")
                seconds += run.seconds
            return Reference(study, snapshot(study), seconds, 0.0)
        return self._once("reference eval", build)

    def partial_train(self) -> Path:
        """A train run stopped with ``--until 10`` (checkpoints 5 and 10): the base of the corruption scenarios."""
        def build():
            folder = self.root / "reference" / "partial"
            folder.mkdir(parents=True)
            run = self.runner.run(self.train(folder / "run") + ["--until", "10"], folder)
            if run.rc != 0:
                raise HarnessError(f"train --until 10 failed ({run.describe()}): {shown_error(run)}")
            return folder / "run"
        return self._once("partial train", build)


# ------------------------------------------------------------------------------------------------- judging

def judged(run: Run, *, names: Sequence[str | Sequence[str]] = (), root: Path | None = None,
           before: dict[str, Digest] | None = None, ignore: Sequence[str] = (),
           recovered: Callable[[], list[str]] | None = None, refusal_survives: bool = True,
           advice_check: Callable[[str], str] | None = None) -> Verdict:
    """The verdict on a command facing a fault: refused clearly with nothing lost, or (where ``recovered`` is
    given) finished with a correct study; finishing without ``recovered`` means the fault was accepted silently."""
    if run.rc == 0 and not run.timed_out:
        if recovered is None:
            said = run.stdout.strip().splitlines()[-1:] or [""]
            return Verdict(False, False, detail=f"accepted silently (exit 0): {said[0][:160]}")
        problems = recovered()
        # finished but wrong where a refusal naming something was the other right answer: an error was due
        return Verdict(not problems, None if not problems or not names else False,
                       detail="recovered: equal to the uninterrupted run" if not problems
                       else f"exit 0 but {summarize(problems)}")
    clear, why = judge_refusal(run, names)
    if clear and advice_check is not None:
        why = advice_check(run.error_line())
        clear = not why
    gone = lost(before, snapshot(root), ignore) if before is not None and root is not None else []
    detail = f"refused ({run.describe()})" + ("" if clear else f", not clear: {why}")
    if gone:
        detail += f"; lost {summarize(gone)}"
    if not refusal_survives:
        detail += "; the study was left incomplete"
    return Verdict(refusal_survives and not gone and not run.timed_out, clear, detail=detail, error=shown_error(run))


# ------------------------------------------------------------------------------------------------- catalogue

SCENARIOS: list[tuple[str, str, Callable[[Lab, Path], Verdict]]] = []


def scenario(category: str, name: str):
    def register(fn: Callable[[Lab, Path], Verdict]):
        SCENARIOS.append((category, name, fn))
        return fn
    return register


# ---- kill -9 at random moments, re-run to completion, compare bitwise

def kill_and_finish(lab: Lab, folder: Path, name: str, argv: list[str], out: Path, ref: Reference) -> Verdict:
    """``lab.kills`` kills of ``argv`` at sorted random fractions of the reference's working time, then one run
    to completion; the study must equal the uninterrupted reference."""
    rng = lab.rng(name)
    fractions = sorted(rng.random() for _ in range(lab.kills))
    work = max(ref.seconds - ref.first_write, 1.0)
    landed, notes, previous = [], [], 0.0
    for x in fractions:
        delay = ref.first_write + (x - previous) * work  # the next moment, counted from this attempt's start
        previous = x
        run = lab.runner.run(argv, folder, kill_after=delay)
        if run.killed_at is None:
            notes.append(f"kill at {delay:.1f}s missed ({run.describe()}"
                         + (f": {shown_error(run)})" if run.rc else ")"))
            continue
        landed.append(delay)
        notes += [f"after the kill at {delay:.1f}s {bad}" for bad in dangling_latest(out)[:1]]
    kills = f"{len(landed)}/{lab.kills} kills landed" + (f" at {', '.join(f'{d:.1f}s' for d in landed)}"
                                                         if landed else "")
    final = lab.runner.run(argv, folder)
    extra = "".join(f"; {n}" for n in notes)
    if final.rc != 0:
        return Verdict(False, detail=f"{kills}{extra}; the re-run failed ({final.describe()})",
                       error=shown_error(final))
    problems = compare(ref.state, snapshot(out))
    verdict = ("bitwise equal to the uninterrupted run" if not problems
               else f"differs from the uninterrupted run: {summarize(problems)}")
    return Verdict(not problems, detail=f"{kills}{extra}; {verdict}")


@scenario("kill", "train")
def kill_train(lab: Lab, folder: Path) -> Verdict:
    run_dir = folder / "run"
    return kill_and_finish(lab, folder, "train", lab.train(run_dir), run_dir, lab.ref_train())


@scenario("kill", "outer")
def kill_outer(lab: Lab, folder: Path) -> Verdict:
    study = folder / "study"
    return kill_and_finish(lab, folder, "outer", lab.loop("outer", study), study, lab.ref_outer())


@scenario("kill", "inner")
def kill_inner(lab: Lab, folder: Path) -> Verdict:
    ref = lab.ref_inner()
    study = copy(lab.ref_outer().root, folder / "study")
    return kill_and_finish(lab, folder, "inner", lab.loop("inner", study), study, ref)


@scenario("kill", "reproduce 00 01 02")
def kill_reproduce(lab: Lab, folder: Path) -> Verdict:
    study = folder / "study"
    return kill_and_finish(lab, folder, "reproduce", lab.reproduce(study), study, lab.ref_reproduce())


# ---- concurrent writers

def second_writer(lab: Lab, folder: Path, argv: list[str], out: Path, busy: Path, ref: Reference) -> Verdict:
    """Start ``argv``; once it has written ``busy``, hold it paused and run the same command again: the second
    must exit at once, non-zero, naming the first one's pid, and write nothing; then the first finishes and must
    equal the uninterrupted reference."""
    first = lab.runner.start(argv, folder)
    if not first.watch(busy.exists, lab.runner.timeout):
        run = lab.runner.finish(first)
        raise HarnessError(f"the first command never wrote {busy.name} ({run.describe()}): {shown_error(run)}")
    first.pause()
    try:
        before = snapshot(out)
        second = lab.runner.run(argv, folder, timeout=SECOND_WRITER_TIMEOUT)
        written = compare(before, snapshot(out))
    finally:
        first.resume()
    done = lab.runner.finish(first)
    clear, why = judge_refusal(second, [str(first.pid)])
    problems = (compare(ref.state, snapshot(out)) if done.rc == 0
                else [f"the first command failed ({done.describe()}): {shown_error(done)}"])
    detail = (f"second {second.describe()}" + ("" if clear else f", not clear: {why}")
              + (f", it changed {len(written)} files" if written else ", it wrote nothing")
              + ("; the first ends equal to the uninterrupted run" if not problems
                 else f"; the first ends with {summarize(problems)}"))
    return Verdict(not problems, clear, detail=detail, error=shown_error(second) if second.rc else "")


@scenario("concurrency", "two train on one run dir")
def two_train(lab: Lab, folder: Path) -> Verdict:
    run_dir = folder / "run"
    return second_writer(lab, folder, lab.train(run_dir), run_dir, run_dir / "config.json", lab.ref_train())


@scenario("concurrency", "two outer on one study")
def two_outer(lab: Lab, folder: Path) -> Verdict:
    study = folder / "study"
    return second_writer(lab, folder, lab.loop("outer", study), study, study / "outer" / "gen_0" / "config.json",
                         lab.ref_outer())


def keyed_rows(path: Path, key_columns: Sequence[str]) -> dict[tuple, str]:
    """results.csv as {key columns: value}; a missing file is an empty table."""
    if not path.exists():
        return {}
    header, rows = results_rows(path)
    index = {c: i for i, c in enumerate(header)}
    if any(c not in index for c in key_columns) or "value" not in index:
        return {}
    pick = lambda r, c: r[index[c]] if index[c] < len(r) else ""  # noqa: E731
    return {tuple(pick(r, c) for c in key_columns): pick(r, "value") for r in rows}


@scenario("concurrency", "two eval on one study")
def two_eval(lab: Lab, folder: Path) -> Verdict:
    ref = lab.ref_eval()
    study = copy(lab.ref_inner().root, folder / "study")
    header, rows = results_rows(ref.root / "results.csv")
    key_columns = [c for c in header if c not in ("value", "n")]
    # earlier results of another condition make every rewrite of the table take long enough for two unlocked
    # writers to overlap on most of their writes (a race that 216 rows alone lose only now and then)
    condition = header.index("condition")
    earlier = [tuple(f"{v}_earlier{k}" if i == condition else v for i, v in enumerate(r))
               for k in range(EARLIER_COPIES) for r in rows]
    with open(study / "results.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header, *earlier])
    procs = {task: lab.runner.start(lab.eval(study, task), folder) for task in ("hellaswag", "mmlu")}
    runs = {task: lab.runner.finish(proc) for task, proc in procs.items()}
    notes, clear, error = [], None, ""
    for task, run in runs.items():
        notes.append(f"eval {task} {run.describe()}")
        if run.rc != 0:  # refused or failed: say how, then retry it alone as a user would
            ok, why = judge_refusal(run)
            clear = ok if clear is None else clear and ok
            error = error or shown_error(run)
            retry = lab.runner.run(lab.eval(study, task), folder)
            notes.append(f"retried alone: {retry.describe()}" + ("" if ok else f" (not clear: {why})"))
    got = keyed_rows(study / "results.csv", key_columns)
    expected = keyed_rows(ref.root / "results.csv", key_columns)
    expected.update({tuple(r[header.index(c)] for c in key_columns): r[header.index("value")] for r in earlier})
    missing = [k for k in expected if k not in got]
    wrong = [k for k in expected if k in got and got[k] != expected[k]]
    notes.append(f"{len(got)} of {len(expected)} rows" + (f", {len(wrong)} with another value" if wrong else ""))
    return Verdict(not missing and not wrong, clear, rows_lost=len(missing), detail="; ".join(notes), error=error)


# ---- damaged files

def latest_of(run_dir: Path) -> Path:
    checkpoints = run_dir / "checkpoints"
    return checkpoints / (checkpoints / "latest").read_text().strip()


def resume_damaged(lab: Lab, folder: Path, damage: Callable[[Path], Path | None],
                   names: Sequence[str | Sequence[str]], **kw) -> Verdict:
    """``train --resume`` over a copy of the --until 10 run after ``damage(run_dir)`` (which returns the file it
    damaged, if any): a clear refusal that keeps the rest, or a recovery equal to the uninterrupted run."""
    ref = lab.ref_train()
    run_dir = copy(lab.partial_train(), folder / "run")
    damaged = damage(run_dir)
    before = snapshot(run_dir)
    run = lab.runner.run(lab.train(run_dir), folder)
    ignore = [damaged.relative_to(run_dir).as_posix()] if damaged else []
    return judged(run, names=names, root=run_dir, before=before, ignore=ignore,
                  recovered=lambda: compare(ref.state, snapshot(run_dir)), **kw)


def truncated_in_latest(name: str) -> Callable[[Path], Path]:
    def damage(run_dir: Path) -> Path:
        path = latest_of(run_dir) / name
        truncate(path)
        return path
    return damage


@scenario("corruption", "truncated model.safetensors")
def truncated_model(lab: Lab, folder: Path) -> Verdict:
    return resume_damaged(lab, folder, truncated_in_latest("model.safetensors"), ["model.safetensors"])


@scenario("corruption", "truncated optimizer.pt")
def truncated_optimizer(lab: Lab, folder: Path) -> Verdict:
    return resume_damaged(lab, folder, truncated_in_latest("optimizer.pt"), ["optimizer.pt"])


@scenario("corruption", "truncated state.json")
def truncated_state(lab: Lab, folder: Path) -> Verdict:
    return resume_damaged(lab, folder, truncated_in_latest("state.json"), ["state.json"])


@scenario("corruption", "missing optimizer.pt")
def missing_optimizer(lab: Lab, folder: Path) -> Verdict:
    def damage(run_dir: Path) -> Path:
        path = latest_of(run_dir) / "optimizer.pt"
        path.unlink()
        return path

    def advice(line: str) -> str:  # the checkpoint that lacks it is the latest: resuming from it cannot help
        said = line.lower()
        return "advises resuming from the latest checkpoint, the one that lacks it" \
            if re.search(r"resume from (the run's |its )?latest", said) else ""
    return resume_damaged(lab, folder, damage, ["optimizer.pt"], advice_check=advice)


@scenario("corruption", "latest names a missing dir")
def dangling_pointer(lab: Lab, folder: Path) -> Verdict:
    def damage(run_dir: Path) -> Path:
        pointer = run_dir / "checkpoints" / "latest"
        pointer.write_text("step_000999\n")
        return pointer
    return resume_damaged(lab, folder, damage, [("step_000999", "latest")])


@scenario("corruption", "stale .step_*.tmp dirs")
def stale_temporaries(lab: Lab, folder: Path) -> Verdict:
    def damage(run_dir: Path) -> None:  # what a save killed mid-way leaves (atomic.atomic_path's names)
        tmp = run_dir / "checkpoints" / ".step_000015.k7q2x9.tmp"
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(os.urandom(200_000))
        (run_dir / "checkpoints" / ".latest.a1b2c3.tmp").write_text("step_000015\n")
    return resume_damaged(lab, folder, damage, [], refusal_survives=False)


def fresh_train_on(lab: Lab, folder: Path, tokens: Path, names: Sequence[str | Sequence[str]]) -> Verdict:
    """A fresh train over the damaged token folder ``tokens``: it must be refused."""
    run = lab.runner.run(lab.train(folder / "run", tokens=tokens), folder)
    return judged(run, names=names)


def train_shard(tokens: Path, index: int = 0) -> Path:
    return sorted(tokens.glob("*_train_*.bin"))[index]


@scenario("corruption", "truncated shard")
def truncated_shard(lab: Lab, folder: Path) -> Verdict:
    tokens = copy(lab.tokens, folder / "tokens")
    shard = train_shard(tokens)
    truncate(shard, 1 - 1000 / shard.stat().st_size)
    return fresh_train_on(lab, folder, tokens, [shard.name])


@scenario("corruption", "missing middle shard")
def missing_middle_shard(lab: Lab, folder: Path) -> Verdict:
    tokens = folder / "tokens"  # the package's own writer, with shards small enough for L to span three files
    code = ("import sys\nfrom genprune_nb.config import get_preset\nfrom genprune_nb.data import catalog\n"
            "from genprune_nb.data.prepare import prepare_files\nd = get_preset('smoke').data\n"
            "prepare_files(catalog.text_files(d.corpus), sys.argv[1], d.shard_prefix, val_documents=d.val_documents,"
            " small_documents=d.small_documents, shard_tokens=800_000, progress=False)\n")
    made = subprocess.run([lab.runner.python, "-c", code, str(tokens)], env=lab.runner.env, capture_output=True,
                          text=True)
    shards = sorted(tokens.glob("*_train_*.bin"))
    if made.returncode != 0 or len(shards) < 3:
        raise HarnessError(f"could not write a 3-shard corpus: {(made.stderr.strip().splitlines() or [''])[-1]}")
    middle = shards[len(shards) // 2]
    middle.unlink()
    return fresh_train_on(lab, folder, tokens, [middle.name])


@scenario("corruption", "token id >= vocab size")
def token_out_of_vocab(lab: Lab, folder: Path) -> Verdict:
    tokens = copy(lab.tokens, folder / "tokens")
    shard, index, token = train_shard(tokens), 100, 50400  # smoke's vocab_size is 50304; the first batch reads it
    with open(shard, "r+b") as fh:
        fh.seek(1024 + 2 * index)
        fh.write(token.to_bytes(2, "little"))
    # the offset as a token index or a byte offset; a checksum mismatch against the meta file also names it
    return fresh_train_on(lab, folder, tokens, [shard.name, (str(index), str(1024 + 2 * index), "sha256", "hash",
                                                              "checksum")])


def inner_over_outer(lab: Lab, folder: Path, damage: Callable[[Path], None], *sets: str,
                     names: Sequence[str | Sequence[str]], recover: bool) -> Verdict:
    """``inner --conditions Connectome`` over a copy of the finished outer study after ``damage(study)``."""
    study = copy(lab.ref_outer().root, folder / "study")
    damage(study)
    before = snapshot(study)
    run = lab.runner.run(lab.loop("inner", study, *sets, extra=["--conditions", "Connectome"]), folder)
    recovered = None
    if recover:  # the reference is built only when a recovery needs checking
        recovered = lambda: compare(only(lab.ref_inner().state, ("outer/", "inner/Connectome/")),  # noqa: E731
                                    snapshot(study))
    verdict = judged(run, names=names, root=study, before=before, recovered=recovered)
    trained = sorted(p.parent.parent.relative_to(study).as_posix() for p in study.glob("inner/*/*/checkpoints/latest"))
    if trained and not recover:
        verdict.detail += f"; trained {', '.join(trained)}"
    return verdict


@scenario("corruption", "connectome of another shape")
def connectome_other_shape(lab: Lab, folder: Path) -> Verdict:
    return inner_over_outer(lab, folder, lambda study: None, "model.n_layer=3",
                            names=[("transformer.h.2", "model.n_layer")], recover=False)


@scenario("corruption", "truncated connectome.gpc")
def truncated_connectome(lab: Lab, folder: Path) -> Verdict:
    return inner_over_outer(lab, folder, lambda study: truncate(study / "outer" / "connectome.gpc"),
                            names=["connectome.gpc"], recover=True)


@scenario("corruption", "missing generation.json")
def missing_generation_json(lab: Lab, folder: Path) -> Verdict:
    ref = lab.ref_outer()
    study = copy(ref.root, folder / "study")
    (study / "outer" / "gen_1" / "generation.json").unlink()
    before = snapshot(study)
    run = lab.runner.run(lab.loop("outer", study), folder)
    return judged(run, names=["generation.json"], root=study, before=before, refusal_survives=False,
                  recovered=lambda: compare(ref.state, snapshot(study)))


@scenario("corruption", "damaged results.csv row")
def damaged_results_row(lab: Lab, folder: Path) -> Verdict:
    ref = lab.ref_eval()
    study = copy(ref.root, folder / "study")
    path = study / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    task = next(csv.reader(io.StringIO(lines[0]))).index("task")
    number = max(i for i, line in enumerate(lines) if i and next(csv.reader(io.StringIO(line)))[task].startswith(
        "hellaswag"))
    lines[number] = lines[number].rstrip("\n").rsplit(",", 2)[0] + "\n"  # value and n cut off: a half-written row
    path.write_text("".join(lines))
    before = snapshot(study)
    run = lab.runner.run(lab.eval(study, "hellaswag"), folder)
    line_no = number + 1  # 1-based, the header is line 1
    return judged(run, names=["results.csv", (f"{line_no}", f"{line_no - 1}")], root=study, before=before,
                  recovered=lambda: compare(ref.state, snapshot(study)))


@scenario("corruption", "truncated kept checkpoint (eval)")
def truncated_kept_checkpoint(lab: Lab, folder: Path) -> Verdict:
    study = copy(lab.ref_inner().root, folder / "study")
    ckpt = study / "inner" / "Connectome" / "seed_0" / "checkpoints" / "step_000005"
    truncate(ckpt / "model.safetensors")
    before = snapshot(study)
    run = lab.runner.run(lab.eval(study, "hellaswag"), folder)
    return judged(run, names=["model.safetensors", "step_000005"], root=study, before=before,
                  ignore=[(ckpt / "model.safetensors").relative_to(study).as_posix()])


# ---- bad command lines

def refused_fresh(lab: Lab, folder: Path, argv: list[str], names: Sequence[str | Sequence[str]],
                  out: Path) -> Verdict:
    """A command that must be refused before it writes anything under ``out``."""
    run = lab.runner.run(argv, folder)
    verdict = judged(run, names=names)
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    if written and run.rc != 0:
        verdict.detail += f"; wrote {len(written)} files before refusing"
    return verdict


@scenario("input", "--set train.steps=1e-3")
def steps_not_int(lab: Lab, folder: Path) -> Verdict:  # the message must quote the value given, not a coerced 0
    return refused_fresh(lab, folder, lab.train(folder / "run", "train.steps=1e-3"), ["train.steps", "1e-3"],
                         folder / "run")


@scenario("input", "--set train.warmup_steps=1e-3")
def warmup_not_int(lab: Lab, folder: Path) -> Verdict:  # 0 warmup steps is valid: a coerced 0 passes unseen
    return refused_fresh(lab, folder, lab.train(folder / "run", "train.warmup_steps=1e-3"),
                         ["train.warmup_steps"], folder / "run")


@scenario("input", "unknown preset")
def unknown_preset(lab: Lab, folder: Path) -> Verdict:
    argv = lab.runner.cli("train", "--preset", "nosuch", "--no-progress", "--device", "cpu", "--run-dir",
                          folder / "run")
    return refused_fresh(lab, folder, argv, ["nosuch"], folder / "run")


@scenario("input", "unknown field")
def unknown_field(lab: Lab, folder: Path) -> Verdict:
    return refused_fresh(lab, folder, lab.train(folder / "run", "train.nosuch=1"), ["nosuch"], folder / "run")


@scenario("input", "--set inner.seeds=a,b")
def bad_list_items(lab: Lab, folder: Path) -> Verdict:
    return inner_over_outer(lab, folder, lambda study: None, "inner.seeds=a,b", names=["inner.seeds"],
                            recover=False)


@scenario("input", "unknown inner condition")
def unknown_condition(lab: Lab, folder: Path) -> Verdict:
    study = folder / "study"
    argv = lab.loop("inner", study, extra=["--conditions", "Bogus"])
    return refused_fresh(lab, folder, argv, ["Bogus"], study)


@scenario("input", "eval --task nosuch")
def unknown_task(lab: Lab, folder: Path) -> Verdict:
    run_dir = copy(lab.partial_train(), folder / "run")
    before = snapshot(run_dir)
    argv = lab.runner.cli("eval", "--checkpoint", run_dir, "--task", "nosuch", "--out", folder / "results.csv",
                          "--limit", "4", "--device", "cpu", "--no-progress")
    return judged(lab.runner.run(argv, folder), names=["nosuch"], root=run_dir, before=before)


@scenario("input", "reproduce with a bad override")
def reproduce_bad_override(lab: Lab, folder: Path) -> Verdict:
    study = folder / "study"
    run = lab.runner.run(lab.reproduce(study, "train.nosuch=1"), folder)
    verdict = judged(run, names=["nosuch"])
    started = sorted(p.name for p in (study / "notebooks").glob("*.ipynb"))
    if started:  # papermill writes a notebook's output copy as it starts its kernel
        verdict.clear = False
        verdict.detail += f"; a kernel ran first ({', '.join(started)})"
    return verdict


@scenario("input", "unwritable run dir")
def unwritable_run_dir(lab: Lab, folder: Path) -> Verdict:
    blocker = folder / "blocker"  # a file where a folder should go: unwritable even for root
    blocker.write_text("not a folder\n")
    return refused_fresh(lab, folder, lab.train(blocker / "run"), ["blocker"], blocker)


def resume_with(lab: Lab, folder: Path, setting: str, field: str) -> Verdict:
    run_dir = copy(lab.partial_train(), folder / "run")
    before = snapshot(run_dir)
    run = lab.runner.run(lab.train(run_dir, setting), folder)
    verdict = judged(run, names=[field], root=run_dir, before=before)
    if run.rc == 0 and "config.json" in {p.split(" ")[-1] for p in lost(before, snapshot(run_dir))}:
        verdict.detail += f"; config.json rewritten as if the whole run had used {setting}"
    return verdict


@scenario("input", "resume with another lr")
def resume_other_lr(lab: Lab, folder: Path) -> Verdict:
    return resume_with(lab, folder, "train.lr=0.001", "train.lr")


@scenario("input", "resume with another model shape")
def resume_other_shape(lab: Lab, folder: Path) -> Verdict:
    return resume_with(lab, folder, "model.n_embd=64", "model.n_embd")


@scenario("input", "outer generations=3 over 2")
def outer_more_generations(lab: Lab, folder: Path) -> Verdict:
    study = copy(lab.ref_outer().root, folder / "study")
    before = snapshot(study)
    run = lab.runner.run(lab.loop("outer", study, "outer.generations=3"), folder)

    def recovered() -> list[str]:  # a third generation, and the final connectome is that generation's
        final, third = study / "outer" / "connectome.gpc", study / "outer" / "gen_2" / "connectome.gpc"
        problems = lost(before, snapshot(study), ignore=["outer/connectome.gpc"])
        if not third.exists():
            return problems + ["no outer/gen_2/connectome.gpc"]
        if final.read_bytes() != third.read_bytes():
            problems.append("outer/connectome.gpc is not generation 2's connectome (left from the 2-generation run)")
        return problems
    return judged(run, names=["outer.generations"], root=study, before=before, recovered=recovered)


@scenario("input", "outer with another lr (finished study)")
def outer_other_lr(lab: Lab, folder: Path) -> Verdict:
    study = copy(lab.ref_outer().root, folder / "study")
    before = snapshot(study)
    run = lab.runner.run(lab.loop("outer", study, "train.lr=0.001"), folder)
    verdict = judged(run, names=["train.lr"], root=study, before=before)
    if run.rc == 0 and not lost(before, snapshot(study)):
        verdict.detail += "; the old results were returned as if trained with the new lr"
    return verdict


# ------------------------------------------------------------------------------------------------- report

def outcome_line(category: str, name: str, v: Verdict, seconds: float, harness: bool) -> str:
    outcome = "HARNESS" if harness else ("survived" if v.survived else "FAILED")
    clear = "-" if v.clear is None else ("clear" if v.clear else "UNCLEAR")
    line = f"{category:<11} {name:<40} {outcome:<8} {clear:<7} {v.rows_lost:>2} {seconds:5.0f}s  {v.detail}"
    return line + (f" | {v.error[:220]}" if v.error else "")


def summary_table(done: list[tuple[str, str, Verdict, bool]]) -> list[str]:
    lines = [f"{'category':<11} {'tried':>5} {'survived':>8} {'clear':>7} {'rows lost':>9} {'harness err':>11}"]
    for category in [*CATEGORIES, "total"]:
        rows = [d for d in done if category in (d[0], "total")]
        if not rows:
            continue
        due = [v for _, _, v, _ in rows if v.clear is not None]
        clear = f"{sum(bool(v.clear) for v in due)}/{len(due)}" if due else "-"
        lines.append(f"{category:<11} {len(rows):>5} {sum(v.survived for _, _, v, _ in rows):>8} {clear:>7} "
                     f"{sum(v.rows_lost for _, _, v, _ in rows):>9} {sum(h for *_, h in rows):>11}")
    return lines


def commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "genprune_nb"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    shared = REPO.parent / "shared" / "data" / "external"
    if "GENPRUNE_DATA_DIR" not in env and shared.is_dir():
        env["GENPRUNE_DATA_DIR"] = str(shared)
    return env


def main(argv: list[str] | None = None) -> int:
    names = [n for _, n, _ in SCENARIOS]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="CATEGORY_OR_NAME",
                    help=f"categories ({', '.join(CATEGORIES)}) or scenario names (as printed)")
    ap.add_argument("--kills", type=int, default=2, help="kills per command in the kill category (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    ap.add_argument("--threads", type=int, default=1, help="threads of every child process (default 1)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one command may take (default 900)")
    ap.add_argument("--workdir", help="where the temporary folders go (default: the system's temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders and print where they are")
    args = ap.parse_args(argv)
    unknown = [o for o in args.only or [] if o not in CATEGORIES and o not in names]
    if unknown:
        ap.error(f"unknown categories or scenarios {unknown}; choose from {', '.join(CATEGORIES)} or {names}")
    if args.kills < 0:
        ap.error("--kills must be >= 0")
    chosen = [s for s in SCENARIOS if not args.only or s[0] in args.only or s[1] in args.only]

    root = Path(tempfile.mkdtemp(prefix="genprune_faults_", dir=args.workdir))
    runner = Runner(sys.executable, child_env(args.threads), args.timeout)
    lab = Lab(root, runner, args.kills, args.seed)
    print(f"genprune faults: smoke preset, seed {args.seed}, {args.kills} kills per command, {args.threads} "
          f"thread(s) per child, commit {commit()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{datetime.date.today()}", flush=True)
    print(f"{'category':<11} {'scenario':<40} {'outcome':<8} {'clear':<7} {'lost':>2} {'time':>6}  detail | error",
          flush=True)
    done: list[tuple[str, str, Verdict, bool]] = []
    t_start = time.monotonic()
    try:
        for category, name, fn in chosen:
            folder = root / category / "".join(c if c.isalnum() else "_" for c in name).strip("_")
            folder.mkdir(parents=True)
            t0 = time.monotonic()
            harness = False
            try:
                verdict = fn(lab, folder)
            except HarnessError as e:
                verdict, harness = Verdict(False, detail=f"harness error: {e}"), True
            except Exception as e:  # a bug of the harness: reported, never hidden, and the catalogue goes on
                where = traceback.extract_tb(e.__traceback__)[-1]
                verdict = Verdict(False, detail=f"harness error: {e!r} at {Path(where.filename).name}:{where.lineno}")
                harness = True
            runner.kill_all()
            done.append((category, name, verdict, harness))
            print(outcome_line(category, name, verdict, time.monotonic() - t0, harness), flush=True)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        runner.kill_all()
        if lab.tokens_state is not None and snapshot(root / "shared" / "tokens") != lab.tokens_state:
            print("warning: a scenario changed the shared token shards; later scenarios saw other data")
        if args.keep:
            print(f"folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print("\n".join(summary_table(done)))
    print(f"{time.monotonic() - t_start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
