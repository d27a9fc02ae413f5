"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data" / "external"
if not os.environ.get("GENPRUNE_DATA_DIR") and _SHARED.is_dir():
    os.environ["GENPRUNE_DATA_DIR"] = str(_SHARED)  # so that the data catalog finds it in every test
os.environ.setdefault("GENPRUNE_OFFLINE", "1")  # no test downloads on first use (file:// sources still work)


@pytest.fixture(scope="session")
def external_data_dir() -> Path:
    """The read-only external data folder: ``$GENPRUNE_DATA_DIR`` or ``<repo>/../shared/data/external``."""
    path = Path(os.environ.get("GENPRUNE_DATA_DIR") or REPO.parent / "shared" / "data" / "external")
    if not path.is_dir():
        pytest.fail(
            f"external data folder {path} not found; set GENPRUNE_DATA_DIR to the directory holding "
            "tinyshakespeare/, english_prose_stdlib/, gpt2_bpe/, ..."
        )
    return path


CONDITIONS = ("Connectome", "RandomConnectome", "NoConnectome")


@pytest.fixture(scope="session")
def fake_study(tmp_path_factory):
    """A study root laid out like the inner loop's output (genprune_nb.study.layout), without training.

    Smoke-preset checkpoints for the three conditions x seeds 0, 1 x steps 10, 20; each model is a different
    random init, so evaluations differ between checkpoints. For testing evaluations and notebooks quickly.
    """
    import torch

    from genprune_nb.config import get_preset
    from genprune_nb.model.gpt import GPT
    from genprune_nb.study.layout import StudyLayout
    from genprune_nb.training.checkpoint import save_checkpoint

    preset = get_preset("smoke")
    study = StudyLayout(tmp_path_factory.mktemp("study"))
    for c, condition in enumerate(CONDITIONS):
        for seed in (0, 1):
            for step in (10, 20):
                torch.manual_seed(1000 * c + 100 * seed + step)
                save_checkpoint(study.inner_run(condition, seed), step, model=GPT(preset.model), preset=preset,
                                state={"tokens": step * preset.train.tokens_per_step})
    return study


@pytest.fixture(scope="session")
def smoke_preset(tmp_path_factory, external_data_dir):
    """The smoke preset reading token shards of the English prose corpus prepared once per session."""
    from genprune_nb.config import get_preset, override
    from genprune_nb.data import catalog
    from genprune_nb.data.prepare import prepare_files

    tokens = tmp_path_factory.mktemp("tokens")
    preset = override(get_preset("smoke"), [f"data.tokens_dir={tokens}"])
    prepare_files(catalog.text_files(preset.data.corpus), tokens, preset.data.shard_prefix,
                  val_documents=preset.data.val_documents, small_documents=preset.data.small_documents,
                  progress=False)
    return preset


@pytest.fixture(scope="session")
def phrase_shards(tmp_path_factory):
    """A maker of train and val shards of a learnable token stream: a random phrase of ``length`` GPT-2 ids repeated
    ``repeats`` times, its first ``n_train`` tokens the train shard (``<prefix>_train_000000.bin``), the rest the val
    shard; returns ``train``'s ``train_files`` and ``val_files`` arguments."""
    import numpy as np

    from genprune_nb.data.shards import write_shard

    def make(prefix: str, length: int, repeats: int, n_train: int) -> dict[str, list[Path]]:
        root = tmp_path_factory.mktemp(f"{prefix}_tokens")
        stream = np.tile(np.random.default_rng(0).integers(0, 50257, size=length), repeats)
        files = {split: root / f"{prefix}_{split}_000000.bin" for split in ("train", "val")}
        write_shard(files["train"], stream[:n_train])
        write_shard(files["val"], stream[n_train:])
        return {"train_files": [files["train"]], "val_files": [files["val"]]}

    return make
