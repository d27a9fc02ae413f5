"""Every numbered notebook is runnable by the pipeline: one parseable parameters cell, no stored outputs."""
import logging

import nbformat
import pytest
from papermill.translators import PythonTranslator

from genprune_nb.study.pipeline import NOTEBOOKS_DIR, available_notebooks, select

NOTEBOOKS = available_notebooks()
PIPELINE_PARAMETERS = {"run_root", "figures_dir", "device", "progress"}


def test_the_study_has_its_numbered_notebooks():
    assert NOTEBOOKS[:3] == ["00_data", "01_outer_loop", "02_inner_loop"]
    assert select(NOTEBOOKS, ["01", "02_inner_loop"]) == ["01_outer_loop", "02_inner_loop"]
    with pytest.raises(ValueError, match="99"):
        select(NOTEBOOKS, ["99"])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_and_clean_cells(name, caplog):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], "the first code cell, and only it, is tagged parameters"
    with caplog.at_level(logging.WARNING):
        params = {p.name for p in PythonTranslator.inspect(tagged[0])}
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()], "papermill must parse every line"
    assert PIPELINE_PARAMETERS <= params
    assert all(not c.outputs and c.execution_count is None for c in code), "store notebooks without outputs"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {name[:2]}")
