"""The authors' released models (Kotar & Tuckute 2025): load, export, and add them to a study as conditions.

The three 124M models of the paper's inner loop are on the Hugging Face hub (``RELEASED``). Each repo holds a
``config.json`` with the keys ``vocab_size, n_embd, n_layer, n_head, block_size, dropout, bias`` and the weights
under the authors' parameter names (``transformer.wte.weight``, ``transformer.h.{i}.attn.c_attn.weight``, ...,
``lm_head.weight``), which are this package's names too (DESIGN.md §2), as ``model.safetensors`` or
``pytorch_model.bin``. That directory layout is called the *hub layout* here.

* ``load_released(source)``: a GPT from a local folder in the hub layout or a hub repo id (downloaded with
  ``huggingface_hub``, the ``hub`` extra), checked name by name and shape by shape.
* ``export_released(model_or_run, out_dir)``: the reverse, so our runs can be shared in the authors' format.
* ``add_released_to_study(study)``: writes each released model as an ordinary checkpoint of
  ``inner/<condition>/seed_0``, so the evaluation notebooks (03-05) score it beside the study's own conditions.
"""
from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import PAPER_PRESET, ConfigError, ModelConfig, Preset, get_preset
from ..errors import GenpruneError
from ..model.gpt import GPT
from ..progress import tqdm
from ..storage import atomic
from ..training.checkpoint import (
    Checkpoint,
    StateDictError,
    latest_checkpoint,
    model_weights,
    resolve_checkpoint,
    save_checkpoint,
    tie_head,
    unwrap,
)
from .layout import StudyLayout, inner_run_identity
from .model_refs import ModelRef

RELEASED: dict[str, str] = {
    "ConnectomeGPT100M": "TuKoResearch/ConnectomeGPT100M",
    "RandomConnectomeGPT100M": "TuKoResearch/RandomConnectomeGPT100M",
    "NoConnectomeGPT100M": "TuKoResearch/NoConnectomeGPT100M",
}
"""Condition name (used as a results-table condition and a directory name) -> Hugging Face hub repo id."""

_PAPER_INNER = get_preset(PAPER_PRESET).inner_train  # the released models' inner loop (the paper's)
PAPER_TOKENS_PER_STEP = _PAPER_INNER.tokens_per_step  # 512 sequences x 1024 tokens
PAPER_INNER_STEPS = _PAPER_INNER.steps

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_KEYS = ("vocab_size", "n_embd", "n_layer", "n_head", "block_size", "dropout", "bias")
_SHAPE_KEYS = ("vocab_size", "n_embd", "n_layer", "n_head", "block_size")
# ModelConfig fields, if a config has them (the authors' have none: their tokenizer is GPT-2's, the default)
_OPTIONAL_KEYS = ("tie_embeddings", "rope_base", "norm_eps", "init_std", "tokenizer")
_METADATA_KEYS = {"architectures", "model_type", "torch_dtype", "transformers_version", "_name_or_path", "auto_map"}
_WEIGHT_CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ReleasedModelError(GenpruneError, ValueError):
    """A folder in the hub layout does not hold a model this package can load; the message names file and field."""


# ----------------------------------------------------------------------------------------------------- loading


def load_released(
    source: str | Path,
    device: str | torch.device = "cpu",
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> GPT:
    """The GPT in ``source`` (a local folder in the hub layout, a hub repo id, or a name in ``RELEASED``), in eval mode.

    An existing folder wins over a repo id of the same spelling; anything else shaped ``owner/name`` is downloaded.

    Every weight is checked against the architecture the config describes: a missing, unexpected or misshapen
    weight is an error naming the file and the parameters. ``revision`` / ``cache_dir`` go to the hub download.
    """
    folder = resolve_source(source, revision=revision, cache_dir=cache_dir)
    cfg = read_config(folder)
    model = GPT(cfg)
    raw, weights_file = read_weights(folder)
    try:
        state = model_weights(model, raw, weights_file)
        check_state(model, state, weights_file)
        tie_head(model, state, weights_file)
    except StateDictError as err:
        raise ReleasedModelError(str(err)) from None
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def resolve_source(source: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """A local folder for ``source``: the folder itself, or the hub snapshot of a repo id / ``RELEASED`` name."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    text = str(source)
    repo_id = RELEASED.get(text, text)
    if isinstance(source, Path) or not _REPO_ID.match(repo_id) or text.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"{text!r} is neither a folder nor a Hugging Face hub repo id (owner/name) nor one of {', '.join(RELEASED)}"
        )
    return download(repo_id, revision=revision, cache_dir=cache_dir)


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Download a hub repo's config and weights (safetensors if there are any, else the torch .bin) to the hub cache."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(
            f"{repo_id!r} is a Hugging Face hub repo id; downloading it needs the huggingface_hub package: "
            f'pip install -e ".[hub]"  (or pass a local folder holding config.json and model.safetensors)'
        ) from None
    kwargs = {"repo_id": repo_id, "revision": revision, "cache_dir": None if cache_dir is None else str(cache_dir)}
    folder = Path(snapshot_download(allow_patterns=[CONFIG_FILE, "*.safetensors", "*.safetensors.index.json"],
                                    **kwargs))
    if not any((folder / name).exists() for name in _WEIGHT_CANDIDATES):
        folder = Path(snapshot_download(allow_patterns=[CONFIG_FILE, "*.bin", "*.bin.index.json"], **kwargs))
    return folder


def read_config(folder: str | Path) -> ModelConfig:
    """The ModelConfig of a folder's ``config.json`` (authors' keys); refuses biases, notes dropout."""
    file = Path(folder) / CONFIG_FILE
    if not file.is_file():
        raise ReleasedModelError(f"{file} not found: a folder in the hub layout holds {CONFIG_FILE} and the weights "
                                 f"(found: {_listing(folder)})")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReleasedModelError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ReleasedModelError(f"{file} must hold a JSON object with the keys {', '.join(CONFIG_KEYS)}")
    missing = [k for k in _SHAPE_KEYS if k not in raw]
    if missing:
        raise ReleasedModelError(f"{file} lacks the field(s) {missing} (expected {', '.join(CONFIG_KEYS)})")
    if raw.get("bias", False):
        raise ReleasedModelError(f"{file}: field 'bias' is {raw['bias']!r}, but this architecture has no biases "
                                 "(DESIGN.md §2); a model with biases cannot be loaded into it")
    dropout = raw.get("dropout", 0.0)
    if dropout:
        warnings.warn(f"{file}: dropout {dropout} applies only in training; this GPT has none, so evaluations are "
                      "unaffected", stacklevel=3)
    unknown = sorted(set(raw) - set(CONFIG_KEYS) - set(_OPTIONAL_KEYS) - _METADATA_KEYS)
    if unknown:
        warnings.warn(f"{file}: ignoring field(s) {unknown}", stacklevel=3)
    fields = {k: raw[k] for k in (*_SHAPE_KEYS, *_OPTIONAL_KEYS) if k in raw}
    try:
        return ModelConfig(**fields)
    except (ConfigError, TypeError) as err:
        raise ReleasedModelError(f"{file}: {err}") from None


def read_weights(folder: str | Path) -> tuple[dict[str, Any], Path]:
    """(the state dict as stored, all shards merged; the file it came from). ``training.checkpoint.model_weights``
    reduces it to the weights of a model."""
    folder = Path(folder)
    file = next((folder / n for n in _WEIGHT_CANDIDATES if (folder / n).is_file()), None)
    if file is None:
        raise ReleasedModelError(f"no weights in {folder}: expected one of {', '.join(_WEIGHT_CANDIDATES)} "
                                 f"(found: {_listing(folder)})")
    if file.name.endswith(".index.json"):  # a sharded checkpoint: {"weight_map": {name: shard file}}
        shards = sorted(set(json.loads(file.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        if not shards:
            raise ReleasedModelError(f"{file} has no 'weight_map'")
        state = {}
        for shard in shards:
            state.update(_read_file(folder / shard))
    else:
        state = _read_file(file)
    return state, file


def _read_file(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ReleasedModelError(f"weights file {file} not found")
    if file.suffix == ".safetensors":
        return load_file(str(file))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises several types for a foreign or unsafe pickle
        raise ReleasedModelError(f"{file} is not a plain torch state dict (loaded with weights_only=True): {err}") \
            from None
    for key in ("model", "state_dict"):  # a training checkpoint that nests the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict) and not torch.is_tensor(state.get(key)):
            state = state[key]
    if not isinstance(state, dict):
        raise ReleasedModelError(f"{file} holds a {type(state).__name__}, not a state dict")
    return state


def check_state(model: nn.Module, state: Mapping[str, torch.Tensor], file: str | Path) -> None:
    """Refuse missing, unexpected or misshapen weights, naming the file and every offending parameter."""
    model = unwrap(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if getattr(getattr(model, "config", None), "tie_embeddings", False):
        expected.pop("lm_head.weight", None)  # may be stored or not; it is wte
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k != "lm_head.weight"]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing weights {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected weights {_names(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_names(wrong)}")
    if problems:
        cfg = getattr(model, "config", None)
        raise ReleasedModelError(f"{file} does not fit the model of its config.json ({cfg}): " + "; ".join(problems))


def _names(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _listing(folder: str | Path) -> str:
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return ", ".join(names) if names else "nothing"


# ----------------------------------------------------------------------------------------------------- export


def export_released(model_or_checkpoint: nn.Module | Checkpoint | str | Path, out_dir: str | Path) -> Path:
    """Write ``config.json`` (dropout 0.0, bias false; ``tie_embeddings`` true for a tied head, so it reloads tied)
    and ``model.safetensors`` (authors' names) to ``out_dir``.

    Accepts a GPT (also under DDP / torch.compile), a Checkpoint, a checkpoint directory or a run directory (its
    latest checkpoint). A new ``out_dir`` appears complete in one rename; into an existing folder (a hub clone with
    a README, say) each file is replaced atomically, weights first.
    """
    model = _as_model(model_or_checkpoint)
    cfg: ModelConfig = model.config
    authors = ModelConfig()
    for name in ("rope_base", "norm_eps"):
        if getattr(cfg, name) != getattr(authors, name):
            raise ReleasedModelError(f"model.{name}={getattr(cfg, name)} differs from the authors' fixed "
                                     f"{getattr(authors, name)}; their config.json has no field for it")
    config = {"vocab_size": cfg.vocab_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
              "block_size": cfg.block_size, "dropout": 0.0, "bias": False}
    if cfg.tie_embeddings:  # recorded so that load_released ties it again (the authors' loader ignores the field)
        config["tie_embeddings"] = True
    if cfg.tokenizer != "gpt2":  # written only when not the authors' (a key their loaders would ignore)
        config["tokenizer"] = cfg.tokenizer
    # every name stored on its own (a tied head is written as a copy too: the authors' model is untied)
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    out_dir = Path(out_dir)
    if not out_dir.exists():
        with atomic.atomic_path(out_dir) as tmp:
            tmp.mkdir()
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    else:
        with atomic.atomic_path(out_dir / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        atomic.write_text(out_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return out_dir


def _as_model(obj: nn.Module | Checkpoint | str | Path) -> GPT:
    if isinstance(obj, nn.Module):
        model = unwrap(obj)
        if not isinstance(getattr(model, "config", None), ModelConfig):
            raise TypeError(f"export_released needs this package's GPT, got {type(model).__name__}")
        return model
    return (obj if isinstance(obj, Checkpoint) else resolve_checkpoint(obj)).load_model()


# ----------------------------------------------------------------------------------------------------- studies


def condition_name(item: str | Path) -> str:
    """The condition a released model gets: a ``RELEASED`` name as it is, else the folder's or repo's last part."""
    text = str(item)
    name = text if text in RELEASED else Path(text.rstrip("/")).name
    if not _SAFE_NAME.match(name):
        raise ValueError(f"cannot name a condition after {text!r}: use letters, digits, '_', '-' or '.'")
    return name


def add_released_to_study(
    study: StudyLayout | str | Path,
    sources: Mapping[str, str | Path] | None = None,
    preset: Preset | str | None = None,
    step: int = PAPER_INNER_STEPS,
    *,
    seed: int = 0,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[ModelRef]:
    """Make released models conditions of ``study``; return their ModelRefs (what ``study.model_refs()`` now lists).

    ``sources`` maps condition -> local folder in the hub layout or hub repo id (default: ``RELEASED``). Each model
    becomes one checkpoint, ``inner/<condition>/seed_<seed>/checkpoints/step_<step>``, whose preset is ``preset``
    (default: the preset of the study's first checkpoint, else gpt2-124m) with the released model section. Its
    ``tokens`` are nominal: ``step`` x the paper's 524,288 tokens per step (the released models were trained for
    2,000 inner steps; the actual count is not in the release). No metrics.jsonl is written: such a run has no
    training curve. A condition already present is skipped, so the call is idempotent.
    """
    study = study if isinstance(study, StudyLayout) else StudyLayout(study)
    sources = dict(RELEASED if sources is None else sources)
    for condition in sources:
        if not _SAFE_NAME.match(condition):
            raise ValueError(f"condition {condition!r} is not a safe directory name: use letters, digits, _ - .")
    base = _base_preset(study, preset, set(sources))
    for condition, source in tqdm(sources.items(), desc="released models", disable=not progress):
        run_dir = study.inner_run(condition, seed)
        existing = latest_checkpoint(run_dir)
        if existing is not None:
            if not is_released_run(run_dir):
                raise ValueError(f"{run_dir} holds a trained run, not a released model; give {source!r} another "
                                 "condition name")
            continue
        model = load_released(source, revision=revision, cache_dir=cache_dir)
        released_preset = dataclasses.replace(
            base, model=model.config, train=base.inner_train,
            description=f"the authors' released model {condition} ({source}); model section from its config.json")
        zeros = sum(int((p == 0).sum()) for p in model.parameters())
        state = {"tokens": step * PAPER_TOKENS_PER_STEP, "tokens_nominal": True, "released_from": str(source),
                 "zero_fraction": zeros / sum(p.numel() for p in model.parameters())}
        save_checkpoint(run_dir, step, model=model, preset=released_preset, state=state)
        del model
    return study.model_refs(conditions=list(sources))


def _base_preset(study: StudyLayout, preset: Preset | str | None, released: set[str]) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str):
        return get_preset(preset)
    for ref in study.model_refs(final_only=True):  # the study's own runs say which data it evaluates on
        if ref.condition not in released:
            return Checkpoint(Path(ref.path)).preset()
    return get_preset("gpt2-124m")


def is_released_run(run_dir: str | Path) -> bool:
    """Whether an inner-loop run directory holds a released model (added by ``add_released_to_study``)."""
    latest = latest_checkpoint(run_dir) if inner_run_identity(Path(run_dir)) else None
    return latest is not None and "released_from" in latest.state()


def study_checkpoints(
    study: StudyLayout,
    released: Sequence[str | Path] = (),
    *,
    preset: Preset | str | None = None,
    final_only: bool = False,
    progress: bool = True,
) -> list[ModelRef]:
    """The study's kept inner-loop checkpoints (``final_only``: each run's last), after adding the ``released``
    models (``RELEASED`` names or local folders, each a condition named by :func:`condition_name`) as conditions.

    Raises FileNotFoundError when there is none: the inner loop has not run yet.
    """
    if released:
        add_released_to_study(study, {condition_name(c): c for c in released}, preset=preset, progress=progress)
    refs = study.model_refs(final_only=final_only)
    if not refs:
        raise FileNotFoundError(f"no inner-loop checkpoints under {study.root / 'inner'}: run the inner loop first "
                                "(genprune inner, or notebook 02)")
    return refs
