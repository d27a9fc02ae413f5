"""The authors' released models: the hub layout loads, a run exports to it, and released models join a study."""
import builtins
import dataclasses
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from genprune_nb.config import ModelConfig, get_preset
from genprune_nb.model.gpt import GPT
from genprune_nb.study import curves
from genprune_nb.study.layout import StudyLayout
from genprune_nb.study.released import (
    PAPER_TOKENS_PER_STEP,
    RELEASED,
    ReleasedModelError,
    add_released_to_study,
    condition_name,
    export_released,
    is_released_run,
    load_released,
)
from genprune_nb.training.checkpoint import model_state, save_checkpoint

CFG = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64)
SMOKE = get_preset("smoke")


@pytest.fixture(scope="module")
def model():
    return GPT(CFG, seed=0).eval()


def hub_folder(path, model, *, prefix="", fmt="safetensors", config=None, drop=(), reshape=None):
    """A folder in the authors' hub layout written from ``model``'s state dict."""
    path.mkdir(parents=True)
    cfg = {"vocab_size": CFG.vocab_size, "n_embd": CFG.n_embd, "n_layer": CFG.n_layer, "n_head": CFG.n_head,
           "block_size": CFG.block_size, "dropout": 0.0, "bias": False, **(config or {})}
    (path / "config.json").write_text(json.dumps(cfg))
    state = {prefix + k: v.clone() for k, v in model.state_dict().items() if k not in drop}
    if reshape:
        state[prefix + reshape] = torch.zeros(3, 3)
    if fmt == "safetensors":
        save_file(state, str(path / "model.safetensors"))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path


def same_logits(a, b):
    idx = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(idx)[0], b(idx)[0])


@pytest.mark.parametrize("prefix", ["", "_orig_mod.", "module._orig_mod."])
def test_hub_folder_loads_with_identical_logits(tmp_path, model, prefix):
    loaded = load_released(hub_folder(tmp_path / "m", model, prefix=prefix))
    assert not loaded.training and loaded.config == CFG
    assert same_logits(model, loaded)


def test_torch_bin_loads_and_buffers_are_ignored(tmp_path, model):
    folder = hub_folder(tmp_path / "m", model, fmt="bin")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8)  # nanoGPT's causal-mask buffer
    torch.save(state, folder / "pytorch_model.bin")
    assert same_logits(model, load_released(str(folder)))


def test_exported_run_loads_back_identically(tmp_path, model):
    run = tmp_path / "run"
    save_checkpoint(run, 7, model=model, preset=SMOKE)
    out = export_released(run, tmp_path / "export")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg == {"vocab_size": CFG.vocab_size, "n_embd": 32, "n_layer": 2, "n_head": 2, "block_size": 64,
                   "dropout": 0.0, "bias": False}
    back = load_released(out)
    a, b = model_state(model), model_state(back)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # into an existing folder (a hub clone): files are replaced one by one, others kept
    (out / "README.md").write_text("card")
    export_released(GPT(CFG, seed=1), out)
    assert (out / "README.md").exists() and same_logits(GPT(CFG, seed=1), load_released(out))


def test_authors_rotary_buffers_are_checked_and_dropped(tmp_path, model):
    folder = hub_folder(tmp_path / "m", model)
    state = {**model.state_dict(), "transformer.h.0.attn.rotary.inv_freq":
             1.0 / (10000 ** (torch.arange(0, CFG.head_dim, 2).float() / CFG.head_dim))}
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    assert same_logits(model, load_released(folder))
    state["transformer.h.0.attn.rotary.inv_freq"] = state["transformer.h.0.attn.rotary.inv_freq"] * 2
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(ReleasedModelError, match=r"model\.safetensors: rotary frequencies .* differ"):
        load_released(folder)


def test_tied_model_exports_and_reloads_tied(tmp_path):
    tied = GPT(dataclasses.replace(CFG, tie_embeddings=True), seed=3).eval()
    out = export_released(tied, tmp_path / "tied")
    assert json.loads((out / "config.json").read_text())["tie_embeddings"] is True
    back = load_released(out)
    assert back.config.tie_embeddings
    assert back.lm_head.weight is back.transformer.wte.weight
    assert back.lm_head.weight.data_ptr() == back.transformer.wte.weight.data_ptr()
    assert same_logits(tied, back)
    state = load_file(str(out / "model.safetensors"))  # the head is stored too, for the authors' untied loader
    state["lm_head.weight"] = state["lm_head.weight"] + 1
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(ReleasedModelError, match="lm_head.weight differs from transformer.wte.weight"):
        load_released(out)


def test_bias_missing_and_misshapen_weights_are_refused(tmp_path, model):
    with pytest.raises(ReleasedModelError, match=r"config\.json: field 'bias'"):
        load_released(hub_folder(tmp_path / "bias", model, config={"bias": True}))
    with pytest.raises(ReleasedModelError, match=r"model\.safetensors.*missing weights transformer\.h\.1\.mlp\.c_fc"):
        load_released(hub_folder(tmp_path / "missing", model, drop=("transformer.h.1.mlp.c_fc.weight",)))
    with pytest.raises(ReleasedModelError, match=r"wrong shapes lm_head\.weight \(3, 3\)"):
        load_released(hub_folder(tmp_path / "shape", model, reshape="lm_head.weight"))
    with pytest.raises(ReleasedModelError, match="unexpected weights transformer.h.0.attn.c_attn.bias"):
        folder = hub_folder(tmp_path / "extra", model)
        state = {**model.state_dict(), "transformer.h.0.attn.c_attn.bias": torch.zeros(96)}
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
        load_released(folder)
    with pytest.warns(UserWarning, match="dropout 0.1 applies only in training"):
        load_released(hub_folder(tmp_path / "dropout", model, config={"dropout": 0.1}))


def test_repo_id_without_huggingface_hub_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_hub(name, *args, **kwargs):
        if name.startswith("huggingface_hub"):
            raise ImportError("No module named 'huggingface_hub'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[hub\]"'):
        load_released("TuKoResearch/ConnectomeGPT100M")
    with pytest.raises(ImportError, match="TuKoResearch/NoConnectomeGPT100M"):
        load_released("NoConnectomeGPT100M")  # a RELEASED name means its repo
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        load_released("./no/such/folder")


def test_released_models_become_conditions_of_a_study(tmp_path, model):
    study = StudyLayout(tmp_path / "study")
    save_checkpoint(study.inner_run("Connectome", 0), 10, model=model, preset=SMOKE, state={"tokens": 80})
    (study.inner_run("Connectome", 0) / "metrics.jsonl").write_text('{"step": 10, "tokens": 80, "val_loss": 9.0}\n')
    other = GPT(CFG, seed=2).eval()
    sources = {"ConnectomeGPT100M": hub_folder(tmp_path / "a", model),
               "NoConnectomeGPT100M": str(hub_folder(tmp_path / "b", other))}
    refs = add_released_to_study(study, sources, progress=False)
    assert [(r.condition, r.seed, r.step, r.tokens) for r in refs] == [
        ("ConnectomeGPT100M", 0, 2000, 2000 * PAPER_TOKENS_PER_STEP),
        ("NoConnectomeGPT100M", 0, 2000, 2000 * PAPER_TOKENS_PER_STEP)]
    assert {r.condition for r in study.model_refs()} == {"Connectome", *sources}
    assert same_logits(other, refs[1].load_model())
    assert refs[0].path.parent.parent == study.inner_run("ConnectomeGPT100M", 0)
    ckpt_preset = json.loads((refs[0].path / "config.json").read_text())
    assert ckpt_preset["name"] == "smoke" and ckpt_preset["data"] == json.loads(json.dumps(SMOKE.to_dict()["data"]))
    assert is_released_run(study.inner_run("ConnectomeGPT100M", 0))
    assert not is_released_run(study.inner_run("Connectome", 0))

    stamp = os.stat(refs[0].path / "model.safetensors").st_mtime_ns
    assert add_released_to_study(study, sources, progress=False) == refs  # idempotent: nothing rewritten
    assert os.stat(refs[0].path / "model.safetensors").st_mtime_ns == stamp
    with pytest.raises(ValueError, match="holds a trained run"):
        add_released_to_study(study, {"Connectome": sources["ConnectomeGPT100M"]}, progress=False)

    val = curves.inner_curves(study)  # runs without metrics.jsonl contribute no curve
    assert set(val["condition"]) == {"Connectome"} and len(val) == 1


def test_condition_names():
    assert condition_name("ConnectomeGPT100M") == "ConnectomeGPT100M"
    assert condition_name("/data/models/MyRelease/") == "MyRelease"
    assert condition_name("TuKoResearch/RandomConnectomeGPT100M") == "RandomConnectomeGPT100M"
    assert set(RELEASED) == {"ConnectomeGPT100M", "RandomConnectomeGPT100M", "NoConnectomeGPT100M"}
    with pytest.raises(ValueError, match="cannot name a condition"):
        condition_name("bad name!")
