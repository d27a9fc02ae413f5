import json
from pathlib import Path

import pytest

from genprune_nb.study.layout import StudyLayout

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_behavior.ipynb"


def test_notebook_runs_headless_on_the_fake_study(tmp_path, fake_study):
    papermill = pytest.importorskip("papermill")
    root = tmp_path / "study"
    root.mkdir()
    (root / "inner").symlink_to(fake_study.root / "inner")
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "04_behavior.ipynb"), kernel_name="python3", cwd=str(tmp_path),
        parameters={"run_root": str(root), "figures_dir": "figs", "device": "cpu", "stories": [2], "max_words": 30,
                    "progress": False},
        progress_bar=False,
    )
    df = StudyLayout(root).results.load()
    assert set(df["task"]) == {"reading_times@stories=2,words=30"}
    assert set(df["condition"]) == {"Connectome", "RandomConnectome", "NoConnectome"}
    assert set(df["seed"]) == {0, 1} and set(df["step"]) == {10, 20}
    assert len(df) == 12 * 12 and (df.loc[df["metric"] == "pearson_r", "n"] == 30).all()
    for name in ("04_reading_times_over_training.png", "04_surprisal_vs_rt.png", "04_regression.csv"):
        assert (tmp_path / "figs" / name).stat().st_size > 0
    source = json.loads(NOTEBOOK.read_text())
    assert all(not c.get("outputs") for c in source["cells"] if c["cell_type"] == "code")
    assert "parameters" in source["cells"][1]["metadata"]["tags"]
