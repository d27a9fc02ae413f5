"""scripts/outer_ablations.py: its summary table is the package's t-interval, variants in the order they ran."""
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from outer_ablations import summarize  # noqa: E402


def test_summary_is_mean_and_t_interval_per_variant_and_generation():
    per_seed = pd.DataFrame({"variant": ["z_first"] * 4 + ["a_second"] * 2, "seed": [0, 1, 0, 1, 0, 0],
                             "generation": [0, 0, 1, 1, 0, 1], "val_loss": [6.0, 7.0, 5.0, 5.0, 4.0, 3.0]})
    table = summarize(per_seed)
    assert list(table["variant"]) == ["z_first", "z_first", "a_second", "a_second"]  # the order they ran
    first = table.iloc[0]
    half = 12.706204736174698 * 0.5  # t(0.975, 1 dof) x sd 0.7071 / sqrt(2)
    assert first["val_loss_mean"] == pytest.approx(6.5)
    assert (first["ci95_low"], first["ci95_high"]) == pytest.approx((6.5 - half, 6.5 + half))
    assert table.iloc[1]["ci95_low"] == pytest.approx(5.0)  # no spread: a zero-width interval
    assert math.isnan(table.iloc[2]["ci95_low"]) and table.iloc[2]["n_seeds"] == 1  # one seed: no interval


def test_the_figure_has_a_line_per_variant_with_its_interval():
    from genprune_nb.report.plots import variant_val_loss

    per_seed = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 2, "seed": [0, 1, 0, 1, 0, 0],
                             "generation": [0, 0, 1, 1, 0, 1], "val_loss": [6.0, 7.0, 5.0, 5.0, 4.0, 3.0]})
    ax = variant_val_loss(summarize(per_seed)).axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    assert list(bars) == ["a", "b"]
    assert list(bars["a"].lines[0].get_ydata()) == [6.5, 5.0] and list(bars["b"].lines[0].get_ydata()) == [4.0, 3.0]
    assert bars["a"].has_yerr and not bars["b"].has_yerr  # one seed: no interval to draw
