"""Input integrity (issue 12 item 5): damaged or mismatched inputs are refused with the file, row or tensor named."""
import json

import numpy as np
import pytest
import torch

from genprune_nb.config import get_preset, override
from genprune_nb.data.catalog import sha256
from genprune_nb.data.manifest import shard_files
from genprune_nb.data.prepare import prepare_documents
from genprune_nb.data.shards import ShardError, read_shard, write_shard

SMOKE = get_preset("smoke")
DOCS = [f"Document number {i} says something a little different from the others." for i in range(12)]


@pytest.fixture
def prepared(tmp_path):
    """A prepared shard set with several train shards and the preset that reads it."""
    prepare_documents(DOCS, tmp_path, "tiny", val_documents=2, small_documents=2, shard_tokens=40, progress=False)
    preset = override(SMOKE, [f"data.tokens_dir={tmp_path}", "data.shard_prefix=tiny"])
    return preset, tmp_path


def test_the_manifest_records_each_shards_tokens_and_sha256(prepared):
    preset, root = prepared
    meta = json.loads((root / "tiny_meta.json").read_text())
    names = [n for split in meta["files"].values() for n in split]
    assert sorted(meta["n_tokens"]) == sorted(meta["sha256"]) == sorted(names)
    for name in names:
        assert meta["n_tokens"][name] == len(read_shard(root / name))
        assert meta["sha256"][name] == sha256(root / name)


def test_a_missing_middle_shard_stops_a_fresh_run(prepared):
    preset, root = prepared
    large = shard_files(preset, "large")
    assert len(large) >= 3
    large[1].unlink()
    with pytest.raises(ShardError, match=rf"{large[1].name}: shard missing, though .*tiny_meta.json lists it"):
        shard_files(preset, "large")
    assert len(shard_files(preset, "val")) >= 1  # the other corpora are intact
    (root / "tiny_meta.json").unlink()  # as for FineWeb shards fetched from the hub: only the glob applies
    assert shard_files(preset, "large") == [large[0], *large[2:]]


def test_an_unlisted_or_rewritten_shard_is_refused(prepared):
    preset, root = prepared
    large = shard_files(preset, "large")
    extra = root / "tiny_train_000099.bin"
    write_shard(extra, np.arange(50))
    with pytest.raises(ShardError, match=r"tiny_train_000099.bin: shard not listed in .*tiny_meta.json"):
        shard_files(preset, "large")
    extra.unlink()
    write_shard(large[0], read_shard(large[0])[:-3].copy())  # a valid shard, but not the prepared one
    with pytest.raises(ShardError, match=rf"{large[0].name}: holds \d+ tokens, .*tiny_meta.json records \d+"):
        shard_files(preset, "large")


def test_a_manifest_without_per_shard_counts_still_checks_them(prepared):
    preset, root = prepared
    path = root / "tiny_meta.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("n_tokens", "sha256")}))
    assert shard_files(preset, "large")  # the counts follow from shard_tokens and the split totals
    last = shard_files(preset, "large")[-1]
    write_shard(last, read_shard(last)[:-1].copy())
    with pytest.raises(ShardError, match=rf"{last.name}: holds"):
        shard_files(preset, "large")
    path.write_text("{not json")
    with pytest.raises(ShardError, match="tiny_meta.json: not a readable shard manifest"):
        shard_files(preset, "large")



def test_training_on_a_token_id_beyond_the_vocabulary_names_shard_and_offset(tmp_path):
    from genprune_nb.training.loop import train

    preset = override(SMOKE, ["train.steps=2", "train.warmup_steps=1", "train.decay_steps=1"])
    tokens = np.arange(3000) % 1000
    tokens[345] = preset.model.vocab_size  # one past the embedding
    write_shard(tmp_path / "t_train_000000.bin", tokens)
    write_shard(tmp_path / "t_val_000000.bin", np.arange(3000) % 1000)
    with pytest.raises(ShardError, match=rf"t_train_000000.bin: token id {preset.model.vocab_size} at token "
                                         r"offset 345 is outside the model's vocabulary"):
        train(preset, tmp_path / "run", train_files=[tmp_path / "t_train_000000.bin"],
              val_files=[tmp_path / "t_val_000000.bin"], progress=False)


def _connectome(cfg, prune_embeddings=True, meta=None):
    from genprune_nb.connectome.wiring import Connectome
    from genprune_nb.connectome.pruning import prunable_names
    from genprune_nb.model.gpt import GPT

    weights = GPT(cfg, seed=0).state_dict()
    names = prunable_names(weights, prune_embeddings)
    masks = {n: torch.rand(weights[n].shape, generator=torch.Generator().manual_seed(i)) < 0.5
             for i, n in enumerate(names)}
    return Connectome.from_weights(masks, weights, {n: 0.02 for n in names}, meta)


def test_a_connectome_of_another_model_shape_is_refused_naming_the_tensor():
    from genprune_nb.study.generations import condition_start

    two_layers = _connectome(SMOKE.model)
    deeper = override(SMOKE, ["model.n_layer=3"])  # `genprune inner --set model.n_layer=3` over a 2-layer study
    for condition in ("Connectome", "RandomConnectome"):
        with pytest.raises(ValueError, match=r"connectome does not cover the model's prunable tensor "
                                             r"'transformer.h.2.attn.c_attn.weight' \(4 tensors uncovered"):
            condition_start(condition, two_layers, deeper, seed=0)
    wider = override(SMOKE, ["model.n_embd=64"])
    with pytest.raises(ValueError, match=r"connectome: tensor 'transformer.wte.weight' has shape \(50304, 32\), "
                                         r"the model's \(50304, 64\)"):
        condition_start("Connectome", two_layers, wider, seed=0)
    shallower = override(SMOKE, ["model.n_layer=1"])
    with pytest.raises(ValueError, match="tensor 'transformer.h.1.attn.c_attn.weight' is not a parameter"):
        condition_start("Connectome", two_layers, shallower, seed=0)
    state, masks = condition_start("Connectome", two_layers, SMOKE, seed=0)  # its own shape is fine
    assert set(masks) == set(two_layers.signs)


def test_a_connectome_made_without_embeddings_leaves_them_dense_but_may_not_lose_others():
    from genprune_nb.connectome.wiring import Connectome
    from genprune_nb.model.gpt import GPT

    exempt = _connectome(SMOKE.model, prune_embeddings=False)  # the names tell: neither embedding is in it
    state = exempt.init_state(SMOKE.model, seed=0)
    assert torch.equal(state["lm_head.weight"], GPT(SMOKE.model, seed=0).state_dict()["lm_head.weight"])
    recorded = _connectome(SMOKE.model, prune_embeddings=False, meta={"prune_embeddings": True})
    with pytest.raises(ValueError, match="does not cover the model's prunable tensor 'transformer.wte.weight'"):
        recorded.init_state(SMOKE.model, seed=0)  # made with embeddings, says its meta: they went missing
    full = _connectome(SMOKE.model)
    lost = Connectome({n: s for n, s in full.signs.items() if n != "transformer.h.1.mlp.c_fc.weight"},
                      {n: c for n, c in full.scales.items() if n != "transformer.h.1.mlp.c_fc.weight"})
    with pytest.raises(ValueError, match="prunable tensor 'transformer.h.1.mlp.c_fc.weight' \\(1 tensors"):
        lost.init_state(SMOKE.model, seed=0)


def test_masks_given_to_training_must_cover_every_prunable_tensor():
    from genprune_nb.model.gpt import GPT
    from genprune_nb.training.optim import WeightMask

    model = GPT(SMOKE.model, seed=0)
    masks = _connectome(SMOKE.model).masks()
    WeightMask(model, masks)
    del masks["transformer.h.0.mlp.c_proj.weight"]
    with pytest.raises(ValueError, match="mask set does not cover the model's prunable tensor "
                                         "'transformer.h.0.mlp.c_proj.weight'"):
        WeightMask(model, masks)



@pytest.mark.parametrize("damage, message", [
    ('\n{"step": 5, "val_loss": 3.0}\n[1, 2]\n{"step": 9, "val_loss": 2.0}\n', "line 4 is not a metrics record"),
    ('{"step": 5, "val_loss": 3.0}\n{"step": "5", "val_loss": 1}\n{"step": 9}\n', "line 3 is not a metrics record"),
    ('{"step": 5, "val_loss": 3.0}\n{"val_loss": 2.5}\n{"step": 9}\n', "line 3 is not a metrics record"),
    ('{"step": 5, "val_loss": 3.0}\n\n{"step": 7, "val\n{"step": 9}\n', "line 4 is not a JSON record"),
])
def test_a_damaged_metrics_log_names_file_and_line(tmp_path, damage, message):
    from genprune_nb.study.curves import run_curve
    from genprune_nb.training.runlog import RunLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "val_loss": 4.0}\n' + damage)
    with pytest.raises(ValueError, match=f"metrics.jsonl: {message}"):
        run_curve(tmp_path)
    with pytest.raises(ValueError, match=f"metrics.jsonl: {message}"):
        RunLog(path).truncate_after(5)  # what a resume does first
    path.write_text('{"step": 0, "val_loss": 4.0}\n{"step": 5, "val_loss": 3.0}\n{"step": 7, "val_')  # killed
    assert list(run_curve(tmp_path)["step"]) == [0, 5]


def test_a_damaged_generation_summary_names_the_file(tmp_path):
    from genprune_nb.study.curves import generation_summaries, tensor_densities
    from genprune_nb.study.layout import StudyLayout

    study = StudyLayout(tmp_path)
    study.generation(0).mkdir(parents=True)
    path = study.generation(0) / "generation.json"
    path.write_text('{"generation": 0, "density": 0.8, "densities": {"lm_head.weight": 0.8}}')
    assert list(generation_summaries(study)["density"]) == [0.8]
    path.write_text('{"generation": 0,\n "density": 0.8, "densit')  # a truncated file
    for read in (generation_summaries, tensor_densities):
        with pytest.raises(ValueError, match=r"generation.json: not a readable generation summary .*line 2"):
            read(study)
    path.write_text('{"generation": 0, "density": 0.8}')
    with pytest.raises(ValueError, match="generation.json: not a generation summary"):
        tensor_densities(study)
