"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def external_data_dir() -> Path:
    """The read-only external data folder: ``$GENPRUNE_DATA_DIR`` or ``<repo>/../shared/data/external``."""
    path = Path(os.environ.get("GENPRUNE_DATA_DIR", REPO.parent / "shared" / "data" / "external"))
    if not path.is_dir():
        pytest.fail(
            f"external data folder {path} not found; set GENPRUNE_DATA_DIR to the directory holding "
            "tinyshakespeare/, english_prose_stdlib/, gpt2_bpe/, ..."
        )
    return path
