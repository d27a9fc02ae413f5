"""The machinery of ``bench/faults.py``: run the ``genprune`` command line as a child process, kill or pause its
whole process tree, read what a study leaves on disk, and judge an error message.

Kept apart from the catalogue so that each scenario there reads as what it does to a study and what it expects.
Nothing here imports the package: a scenario sees the study only as a user would, through files and exit codes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import signal
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import psutil  # ships with ipykernel, a dependency of the package

# metrics that measure the machine, not the training: left out of every comparison
TIMING_KEY = re.compile(r"per_s$|^mfu$|seconds|elapsed|wall|time")
# files that only coordinate writers (locks): their presence says nothing about a study's state
LOCK_NAME = re.compile(r"(^|\.)lock$|\.lck$")


class HarnessError(RuntimeError):
    """The harness itself could not run a scenario (a reference run failed, a step timed out)."""


# ---------------------------------------------------------------------------------------------------- processes

@dataclass
class Run:
    """One finished command: exit code, output, and how it ended."""

    argv: list[str]
    pid: int
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    killed_at: float | None = None  # seconds after the start at which the harness killed the tree
    timed_out: bool = False
    first_write: float | None = None  # seconds after the start at which the watched path appeared

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    def error_line(self) -> str:
        """The line a user reads: the exception line of a traceback, else the first line of stderr."""
        lines = self.error_lines
        if not lines:
            return ""
        return lines[-1].strip() if self.traceback else lines[0].strip()

    def describe(self) -> str:
        how = (f"killed at {self.killed_at:.1f}s" if self.killed_at is not None
               else "timed out" if self.timed_out else f"exit {self.rc}")
        return f"{how} after {self.seconds:.1f}s"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Process:
    """A command started in its own session; its tree (papermill's kernels included) is ours to kill or pause."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log_stem: Path):
        self.argv = argv
        self._out, self._err = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
        self._out.parent.mkdir(parents=True, exist_ok=True)
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid
        self.started = time.monotonic()
        self.killed_at: float | None = None
        self.timed_out = False
        self.first_write: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill_tree(self) -> None:
        """kill -9 the command and every descendant at one instant (frozen first, so none forks or writes on)."""
        procs = _tree(self.pid)
        _signal_all(procs, signal.SIGSTOP)
        procs += [p for p in _tree(self.pid) if p not in procs]
        _signal_all(procs, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not all(_gone(p) for p in procs) and time.monotonic() < deadline:
            self.popen.poll()
            time.sleep(0.05)

    def pause(self) -> None:
        _signal_all(_tree(self.pid), signal.SIGSTOP)

    def resume(self) -> None:
        _signal_all(_tree(self.pid), signal.SIGCONT)

    def watch(self, until: Callable[[], bool], timeout: float) -> bool:
        """Poll until ``until()`` holds (True) or the process ends or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            if not self.running():
                return until()
            time.sleep(0.05)
        return False

    def wait(self, timeout: float, kill_after: float | None = None, watch: Path | None = None) -> Run:
        """Wait for the end; kill the tree ``kill_after`` seconds after the start, or at ``timeout``."""
        while self.running():
            now = self.elapsed()
            if watch is not None and self.first_write is None and _has_content(watch):
                self.first_write = now
            if kill_after is not None and now >= kill_after:
                self.killed_at = now
                self.kill_tree()
                break
            if now >= timeout:
                self.timed_out = True
                self.kill_tree()
                break
            time.sleep(0.02)
        self.popen.wait()
        return Run(self.argv, self.pid, self.popen.returncode, self._out.read_text(errors="replace"),
                   self._err.read_text(errors="replace"), self.elapsed(), self.killed_at, self.timed_out,
                   self.first_write)


def _has_content(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


@dataclass
class Runner:
    """Starts ``python -m genprune_nb.cli`` children with one environment; numbers their logs."""

    python: str
    env: dict[str, str]
    timeout: float
    live: list[Process] = field(default_factory=list)
    _count: int = 0

    def cli(self, *args: str | os.PathLike) -> list[str]:
        return [self.python, "-m", "genprune_nb.cli", *(str(a) for a in args)]

    def start(self, argv: list[str], cwd: Path) -> Process:
        self._count += 1
        name = f"{self._count:03d}_{Path(argv[3]).name if len(argv) > 3 else 'cmd'}"
        proc = Process(argv, cwd, self.env, cwd / "logs" / name)
        self.live.append(proc)
        return proc

    def finish(self, proc: Process, timeout: float | None = None, kill_after: float | None = None,
               watch: Path | None = None) -> Run:
        try:
            return proc.wait(timeout or self.timeout, kill_after, watch)
        finally:
            self.live.remove(proc)

    def run(self, argv: list[str], cwd: Path, *, timeout: float | None = None, kill_after: float | None = None,
            watch: Path | None = None) -> Run:
        return self.finish(self.start(argv, cwd), timeout, kill_after, watch)

    def kill_all(self) -> None:
        """Leave nothing running behind (an interrupted harness)."""
        for proc in list(self.live):
            proc.resume()
            proc.kill_tree()
            self.live.remove(proc)


# ---------------------------------------------------------------------------------------------------- study state

@dataclass(frozen=True)
class Digest:
    """What one file holds that matters for a comparison, and a short note for messages."""

    value: str
    note: str = ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _without_timing(record):
    return {k: v for k, v in record.items() if not TIMING_KEY.search(k)} if isinstance(record, dict) else record


def metrics_records(path: Path) -> list:
    """metrics.jsonl as records without timing fields; an unreadable line is kept as its text."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                out.append(_without_timing(json.loads(line)))
            except json.JSONDecodeError:
                out.append(line)
    return out


def _metrics_note(records: list) -> str:
    vals = [r.get("step") for r in records if isinstance(r, dict) and "val_loss" in r]
    dup = sorted({s for s in vals if vals.count(s) > 1})
    return f"{len(records)} records" + (f", val_loss logged twice at step {dup}" if dup else "")


def results_rows(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """results.csv as (header, sorted rows of strings)."""
    rows = list(csv.reader(io.StringIO(path.read_text(errors="replace"))))
    return (rows[0] if rows else []), sorted(tuple(r) for r in rows[1:])


def digest(path: Path) -> Digest:
    name = path.name
    if name == "metrics.jsonl":
        records = metrics_records(path)
        return Digest(_sha(json.dumps(records, sort_keys=True).encode()), _metrics_note(records))
    if name == "results.csv":
        header, rows = results_rows(path)
        col = header.index("value") if "value" in header else None
        blank = sum(1 for r in rows if col is not None and (len(r) <= col or not r[col].strip()))
        return Digest(_sha(json.dumps([header, rows]).encode()),
                      f"{len(rows)} rows" + (f", {blank} without a value" if blank else ""))
    if name.endswith(".json"):
        try:
            obj = _without_timing(json.loads(path.read_text()))
            return Digest(_sha(json.dumps(obj, sort_keys=True).encode()))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return Digest(_sha(path.read_bytes()), "not JSON")
    if name.endswith((".safetensors", ".gpc", ".bin")) or name == "latest":
        data = path.read_bytes()
        return Digest(_sha(data), f"{len(data):,} bytes")
    return Digest("present")  # optimizer.pt, rng.pt, logs of other tools: presence only


def snapshot(root: Path, skip: Sequence[str] = ("notebooks", "logs")) -> dict[str, Digest]:
    """Every file under ``root`` (relative path -> Digest), without lock files and the ``skip`` folders."""
    out: dict[str, Digest] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or rel.parts[0] in skip or LOCK_NAME.search(path.name):
            continue
        out[rel.as_posix()] = digest(path)
    return out


def compare(expected: dict[str, Digest], got: dict[str, Digest]) -> list[str]:
    """Differences, one short string each: missing files, extra files, files whose content differs."""
    problems = [f"missing {p}" for p in expected if p not in got]
    problems += [f"extra {p}" for p in got if p not in expected]
    for p in expected:
        if p in got and expected[p].value != got[p].value:
            a, b = expected[p].note, got[p].note
            problems.append(f"differs {p}" + (f" ({b}; expected {a})" if a or b else ""))
    return problems


def lost(before: dict[str, Digest], after: dict[str, Digest], ignore: Sequence[str] = ()) -> list[str]:
    """Files of ``before`` that are gone or changed in ``after`` (new files are no loss)."""
    kept = {k: v for k, v in before.items() if k not in ignore}
    return [p for p in compare(kept, after) if not p.startswith("extra ")]


def summarize(problems: list[str], limit: int = 3) -> str:
    if not problems:
        return "none"
    head = "; ".join(problems[:limit])
    return head + (f"; ... {len(problems) - limit} more" if len(problems) > limit else "")


def safetensors_complete(path: Path) -> bool:
    """The file's header parses and its tensors end exactly at the end of the file."""
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + n + end
    except (OSError, ValueError, KeyError, struct.error):
        return False


def dangling_latest(root: Path) -> list[str]:
    """Every ``checkpoints/latest`` under ``root`` that names no complete checkpoint (a resume would fail)."""
    bad = []
    for pointer in sorted(root.rglob("checkpoints/latest")):
        target = pointer.parent / pointer.read_text(errors="replace").strip()
        rel = pointer.relative_to(root).as_posix()
        if not (target / "state.json").is_file():
            bad.append(f"{rel} names {target.name}, which has no state.json")
        elif not safetensors_complete(target / "model.safetensors"):
            bad.append(f"{rel} names {target.name}, whose model.safetensors is incomplete")
    return bad


def truncate(path: Path, fraction: float = 0.5) -> None:
    """Cut ``path`` to ``fraction`` of its size (a write that died half way)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * fraction))


# ---------------------------------------------------------------------------------------------------- error messages

def judge_refusal(run: Run, names: Sequence[str | Sequence[str]] = (), max_chars: int = 400
                  ) -> tuple[bool, str]:
    """(clear, why not): a non-zero exit with one short stderr line, no traceback, naming each of ``names``
    (a tuple of alternatives: any one of them)."""
    if run.rc == 0:
        return False, "exit 0"
    if run.timed_out:
        return False, "did not exit (timed out)"
    if run.traceback:
        return False, "traceback"
    lines = run.error_lines
    if len(lines) != 1:
        return False, f"{len(lines)} stderr lines"
    if len(lines[0]) > max_chars:
        return False, f"a {len(lines[0])}-character line"
    for name in names:
        options = (name,) if isinstance(name, str) else tuple(name)
        if not any(o.lower() in lines[0].lower() for o in options):
            return False, "does not name " + " or ".join(repr(o) for o in options)
    return True, ""
