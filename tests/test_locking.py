"""One writer at a time (issue 12, item 2): run dirs, outer loops and results tables are locked against a
second process."""
import multiprocessing

from genprune_nb.results import ResultsTable

# the children below only lock files and write CSVs; fork starts them without re-importing torch
CTX = multiprocessing.get_context("fork")


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
