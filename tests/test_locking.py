"""One writer at a time (issue 12, item 2): run dirs, outer loops and results tables are locked against a
second process."""
import multiprocessing
import os
import signal

import pytest

from genprune_nb.storage.locking import LockBusyError, file_lock, folder_lock, run_dir_lock
from genprune_nb.study.generations import run_outer_loop
from genprune_nb.study.layout import StudyLayout
from genprune_nb.study.results import ResultsTable
from genprune_nb.training.loop import train

# the children below only lock files and write CSVs; fork starts them without re-importing torch
CTX = multiprocessing.get_context("fork")


def _hold(lock, held, release):
    with lock:
        held.set()
        release.wait(60)


class Holder:
    """A child process that holds ``lock`` until ``stop``."""

    def __init__(self, lock):
        self.held, self.release = CTX.Event(), CTX.Event()
        self.process = CTX.Process(target=_hold, args=(lock, self.held, self.release))
        self.process.start()
        assert self.held.wait(60), "the child never took the lock"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.release.set()
        self.process.join(60)


def test_second_train_on_a_busy_run_dir_fails_at_once_naming_the_pid(smoke_preset, tmp_path):
    run = tmp_path / "run"
    holder = Holder(run_dir_lock(run))
    try:
        with pytest.raises(LockBusyError, match=rf"run dir {run} is in use by pid {holder.pid}"):
            train(smoke_preset, run, progress=False)
    finally:
        holder.stop()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written: no fingerprint, metrics, checkpoint


def test_second_outer_loop_on_a_busy_folder_fails_at_once(smoke_preset, tmp_path):
    study = StudyLayout(tmp_path)
    holder = Holder(folder_lock(study.outer(), "outer loop"))
    try:
        with pytest.raises(LockBusyError, match=rf"outer loop {study.outer()} is in use by pid {holder.pid}"):
            run_outer_loop(smoke_preset, study, progress=False)
    finally:
        holder.stop()
    assert not study.generation(0).exists()


def test_lock_waits_for_a_short_holder_and_is_freed_by_a_killed_one(tmp_path):
    target = tmp_path / "results.csv"
    holder = Holder(file_lock(target))
    with pytest.raises(LockBusyError, match=rf"{target} is in use by pid {holder.pid}"):
        file_lock(target, timeout=0).acquire()
    holder.release.set()  # released while we wait: the blocking lock gets it
    with file_lock(target, timeout=60):
        pass
    holder.process.join(60)
    killed = Holder(file_lock(target))
    os.kill(killed.pid, signal.SIGKILL)  # a kill -9 leaves the lock file behind, but not the lock
    killed.process.join(60)
    with file_lock(target, timeout=0):
        assert (tmp_path / "results.csv.lock").read_text().strip() == str(os.getpid())


def _add_rows(path, writer, n, start):
    start.wait(60)
    table = ResultsTable(path)
    for i in range(n):
        table.add([{"condition": f"w{writer}", "seed": 0, "step": i, "tokens": i, "task": "t", "metric": "m",
                    "value": float(i), "n": 1}])


def test_concurrent_writers_lose_no_results_row(tmp_path):
    path, n = tmp_path / "results.csv", 25
    start = CTX.Event()
    writers = [CTX.Process(target=_add_rows, args=(path, w, n, start)) for w in range(3)]
    for w in writers:
        w.start()
    start.set()
    for w in writers:
        w.join(120)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    df = ResultsTable(path).load()
    assert len(df) == 3 * n
    assert sorted(df.groupby("condition").size().tolist()) == [n, n, n]
