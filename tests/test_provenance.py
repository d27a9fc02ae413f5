"""Provenance: runs, generations and results rows are only continued, skipped or reused under the recipe they
were made with (issue 12, item 1)."""
import pandas as pd

from genprune_nb.checkpoint import save_checkpoint
from genprune_nb.config import get_preset
from genprune_nb.model import GPT
from genprune_nb.results import FINGERPRINT, ModelRef, ResultsTable, sweep


def test_results_rows_of_a_changed_checkpoint_are_recomputed_never_reused(tmp_path):
    smoke = get_preset("smoke")
    run = tmp_path / "run"
    calls = []

    def evaluate(model):
        calls.append(1)
        return [{"metric": "norm", "value": float(model.lm_head.weight.detach().norm()), "n": 1},
                {"metric": "norm", "value": 1.0, "n": 1, "part": "old-only" if len(calls) == 1 else "new"}]

    def checkpoint(seed):
        ckpt = save_checkpoint(run, 5, model=GPT(smoke.model, seed=seed), preset=smoke)
        return ModelRef("NoConnectome", 0, 5, 2560, ckpt.path)

    table = ResultsTable(tmp_path / "results.csv")
    sweep([checkpoint(0)], "weights", evaluate, table, progress=False)
    sweep([checkpoint(0)], "weights", evaluate, table, progress=False)
    assert len(calls) == 1  # the same weights again: reused
    ref = checkpoint(1)  # the same step of another run
    df = sweep([ref], "weights", evaluate, table, progress=False)
    assert len(calls) == 2
    assert set(df[FINGERPRINT]) == {ref.checkpoint_fingerprint()}
    assert list(df["part"].fillna("")) == ["", "new"]  # the old checkpoint's rows are gone, also the extra-key one
    # a table written before rows recorded fingerprints still loads, and its rows count as unknown
    df.drop(columns=[FINGERPRINT]).to_csv(table.path, index=False)
    assert table.load()[FINGERPRINT].isna().all()
    sweep([ref], "weights", evaluate, table, progress=False)
    assert len(calls) == 3
    assert isinstance(table.load()[FINGERPRINT].iloc[0], str)


def test_fingerprint_column_survives_a_round_trip_as_text(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    row = {"condition": "c", "seed": 0, "step": 1, "tokens": 1, "task": "t", "metric": "m", "value": 1.0, "n": 1}
    table.add([{**row, FINGERPRINT: "1234567890123456"}, {**row, "step": 2, FINGERPRINT: "1e34567890123456"}])
    assert list(table.load()[FINGERPRINT]) == ["1234567890123456", "1e34567890123456"]
    assert pd.api.types.is_numeric_dtype(table.load()["value"])
