"""genprune plan: every number against a hand computation on the smoke preset, the activation formula against the
tensors autograd saves, the connectome formula against the codec, and the command line."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from genprune_nb.cli import main
from genprune_nb.config import get_preset, override
from genprune_nb.connectome import ternary_codec
from genprune_nb.data.shards import write_shard
from genprune_nb.model.gpt import GPT, flops_per_token
from genprune_nb.study import plan as P

SMOKE = get_preset("smoke")  # 2 layers, 2 heads, width 32, vocab 50,304, untied; train 20 x 8 x 64, inner 10 x 8 x 64
N = 2 * 12 * 32 ** 2 + 2 * 50_304 * 32  # blocks + wte + lm_head = 3,244,032
H100 = P.get_gpu("h100")


@pytest.fixture(autouse=True)
def no_prepared_shards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data.tokens_dir is relative: no shards here unless a test writes them


def test_weights_and_flops_by_hand():
    assert N == 3_244_032 == P.weight_count(SMOKE) == GPT(SMOKE.model).num_params()
    assert P.masked_weight_count(SMOKE) == N
    assert P.masked_weight_count(override(SMOKE, {"outer.prune_embeddings": False})) == 2 * 12 * 32 ** 2
    assert P.weight_count(override(SMOKE, {"model.tie_embeddings": True})) == N - 50_304 * 32
    assert flops_per_token(SMOKE.model, 64) == 6 * (2 * 12 * 32 ** 2 + 50_304 * 32) + 12 * 2 * 32 * 64 == 9_854_976


def test_memory_by_hand():
    plain = dataclasses.replace(SMOKE.train, loss_chunk=0)
    mem = P.training_memory(SMOKE, plain, H100, gpus=1)
    layer = 8 * 32 + 16 * 2 * 32 + 4 * 2 + 8  # fp32 residuals, bf16 tensors, log-sum-exp, norm statistics
    head = 4 * 32 + 4 + 2 * 32 + 4 * 50_304 + 16
    assert P.activation_bytes_per_token(SMOKE, plain, H100) == {"layers": 2 * layer, "head": head,
                                                                "head_backward": 12 * 50_304}
    assert mem["loss chunk (logits of one, head gradient)"] == 0
    assert mem["weights (fp32)"] == mem["gradients (fp32)"] == 4 * N
    assert mem["AdamW moments (2 x fp32)"] == 8 * N
    assert mem["masks (fp32, as WeightMask holds them)"] == 4 * N
    assert mem["DDP gradient buckets (fp32)"] == 0
    assert mem["bf16 weight copies (autocast)"] == 2 * (2 * 12 * 32 ** 2 + 50_304 * 32)
    assert mem["activations"] == 4 * 64 * (2 * layer + head + 12 * 50_304)
    assert mem["CUDA context and workspaces"] == P.GiB
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    chunked = P.training_memory(SMOKE, dataclasses.replace(plain, loss_chunk=100), H100, gpus=1)
    assert chunked["activations"] == 4 * 64 * (2 * layer + 8 * 32 + 4 + 16)  # h's fp32 gradient, not the log-probs
    assert chunked["loss chunk (logits of one, head gradient)"] == 100 * 50_304 * (4 + 2) + 4 * 50_304 * 32
    whole = P.training_memory(SMOKE, dataclasses.replace(plain, loss_chunk=10_000), H100, gpus=1)  # one chunk of 256
    assert whole["loss chunk (logits of one, head gradient)"] == 256 * 50_304 * (4 + 2) + 4 * 50_304 * 32
    two = P.training_memory(SMOKE, SMOKE.train, H100, gpus=2, masked=False)
    assert two["DDP gradient buckets (fp32)"] == 4 * N and two["masks (fp32, as WeightMask holds them)"] == 0
    no_flash = P.activation_bytes_per_token(SMOKE, SMOKE.train, H100, flash=False)
    assert no_flash["layers"] == 2 * (layer + 2 * 2 * 2 * 64)  # + scores and probabilities, bf16, h x T per token
    cpu = P.training_memory(SMOKE, SMOKE.train, P.get_gpu("cpu"), gpus=1)
    assert cpu["bf16 weight copies (autocast)"] == 0 and cpu["CUDA context and workspaces"] == 0
    assert P.activation_bytes_per_token(SMOKE, SMOKE.train, P.get_gpu("cpu"))["layers"] == 2 * (8 * 32 + 64 * 32 + 16)


def _saved_bytes_per_token(n_layer: int, loss_chunk: int, batch: int = 2, seq: int = 64) -> float:
    """Bytes autograd saves per token for one forward of a small bytes-vocabulary GPT under bf16 autocast (CPU), the
    weights' own storage and their bf16 copies left out (and the chunked loss's fp32 head gradient, not per token)."""
    preset = override(get_preset("cpu"), {"model.n_layer": n_layer, "model.n_embd": 64, "model.n_head": 4,
                                          "model.block_size": seq, "train.loss_chunk": loss_chunk})
    model = GPT(preset.model, seed=0)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randint(0, 256, (batch, seq))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, x, loss_chunk=loss_chunk)
    head_weight = 4 * preset.model.vocab_size * 64 if loss_chunk else 2 * preset.model.vocab_size * 64
    weight_copies = 2 * n_layer * 12 * 64 ** 2 + head_weight
    return (sum(saved.values()) - weight_copies) / (batch * seq), preset


@pytest.mark.parametrize("loss_chunk", [0, 48])
def test_activation_formula_matches_what_autograd_saves(loss_chunk):
    one, preset = _saved_bytes_per_token(1, loss_chunk)
    three, _ = _saved_bytes_per_token(3, loss_chunk)
    formula = P.activation_bytes_per_token(override(preset, {"train.seq_len": 64}), preset.train, H100)
    assert (three - one) / 2 == pytest.approx(formula["layers"] / preset.model.n_layer, rel=0.02)
    assert one - (three - one) / 2 == pytest.approx(formula["head"], rel=0.02)


def test_time_by_hand():
    plan = P.plan_study(SMOKE, gpus=2, gpu="h100", mfu=0.3)
    outer, inner, study = (plan.compute.iloc[i] for i in range(3))
    assert study["phase"] == "study" and "evaluations of its 18 kept inner checkpoints" in plan.notes[0]  # 6 x 3
    fpt = 9_854_976
    # outer: 20 steps x 8 x 64 tokens; val every 10 of 20 steps (2 passes, the last one included) x 2,048 tokens
    assert (outer["train tokens per run"], outer["val tokens per run"]) == (20 * 512, 2 * 2048)
    outer_seconds = fpt * (20 * 512 + 2 * 2048 / 3) / (0.3 * 989e12 * 2)
    assert outer["hours per run"] == pytest.approx(outer_seconds / 3600)
    assert outer["hours"] == pytest.approx(2 * outer_seconds / 3600)  # 2 generations
    # inner: 10 steps x 512 tokens; val at step 0, 5 and 10; 3 conditions x 2 seeds
    assert (inner["train tokens per run"], inner["val tokens per run"], inner["runs"]) == (5120, 3 * 2048, 6)
    inner_seconds = fpt * (5120 + 3 * 2048 / 3) / (0.3 * 989e12 * 2)
    assert study["hours"] == pytest.approx((2 * outer_seconds + 6 * inner_seconds) / 3600)
    assert P.seconds(1e15, H100, 4, 0.5) == pytest.approx(1e15 / (0.5 * 989e12 * 4))
    assert P.seconds(1e15, P.get_gpu("cpu"), 1, 0.5) is None


def test_connectome_bits_by_hand_and_against_the_codec():
    assert P.connectome_bits_per_weight(0.8) == pytest.approx(-(0.8 * math.log2(0.8) + 0.2 * math.log2(0.2)) + 0.8)
    assert P.connectome_bits_per_weight(0.8 ** 6) == pytest.approx(1.092, abs=1e-3)  # README's 26% connectome
    rng = np.random.default_rng(0)
    p = 0.3
    signs = np.where(rng.random(200_000) < p, rng.choice(np.array([-1, 1], dtype=np.int8), 200_000), 0)
    assert ternary_codec.entropy_bits_per_weight({"w": signs.astype(np.int8)}) == pytest.approx(
        P.connectome_bits_per_weight(p), abs=0.01)


def test_disk_by_hand():
    disk = P.disk_usage(SMOKE).set_index("item")
    bare, resumable, masks = 4 * N + P.SMALL_FILES, 12 * N + P.SMALL_FILES, N // 8  # masks: 1 bit, once per run

    def sparse(per_weight, density):  # a masked run's checkpoint: the survivors of its N masked weights only
        return per_weight * round(density * N) + P.SMALL_FILES

    assert N % 8 == 0 and P.masks_bytes(SMOKE) == masks
    assert P.checkpoint_bytes(SMOKE, optimizer=True) == resumable
    assert P.checkpoint_bytes(SMOKE, optimizer=False, dtype="bfloat16") == 2 * N + P.SMALL_FILES
    assert P.checkpoint_bytes(SMOKE, optimizer=True, density=0.8) == 4 * 2_595_226 + 8 * N + P.SMALL_FILES
    unpruned = 2 * 50_304 * 32  # without prune_embeddings wte and lm_head are stored whole
    assert P.checkpoint_bytes(override(SMOKE, {"outer.prune_embeddings": False}), optimizer=False, density=0.5) == \
        4 * (unpruned + (N - unpruned) // 2) + P.SMALL_FILES
    rows = disk["bytes"]
    assert rows["final checkpoint, generation 0 (float32, density 1.000; no optimizer state)"] == bare  # G = 2
    assert rows["final checkpoint, generation 1 (float32, density 0.800; no optimizer state)"] == sparse(4, 0.8)
    assert not any("earlier kept" in i for i in disk.index)  # train.keep_checkpoints: none
    assert rows["masks, generations 1.. (1 bit per weight, once per run)"] == masks
    g1 = next(i for i in disk.index if i.startswith("connectome file, generation 1"))
    assert rows[g1] == 2 * math.ceil(N * P.connectome_bits_per_weight(0.64) / 8)  # its file and the final copy
    # inner: kept steps 0, 5, 10 (keep_every 5), the final one an evaluation checkpoint too (no optimizer state);
    # the masked conditions at the final connectome's density 0.8^2
    kept = "kept checkpoints per run, final included (float32, density {}) x 2 runs"
    assert rows[f"NoConnectome: 3 {kept.format('1.000')}"] == 6 * bare
    assert rows[f"Connectome: 3 {kept.format('0.640')}"] == rows[f"RandomConnectome: 3 {kept.format('0.640')}"] \
        == 6 * sparse(4, 0.64)
    assert rows["Connectome: masks (1 bit per weight, once per run) x 2 runs"] == 2 * masks
    assert "NoConnectome: masks (1 bit per weight, once per run) x 2 runs" not in rows
    finished = disk[disk["part"] != "while training"]["bytes"].sum()
    connectomes = 2 * math.ceil(N * P.connectome_bits_per_weight(0.64) / 8) + math.ceil(
        N * P.connectome_bits_per_weight(0.8) / 8)
    inner = 6 * bare + 2 * 6 * sparse(4, 0.64) + 2 * 2 * masks  # 3 conditions x 2 seeds x 3 kept steps; 2 masked
    assert finished == bare + sparse(4, 0.8) + masks + connectomes + inner
    assert disk.loc["outer: up to 2 rolling checkpoints of the running generation", "bytes"] == 2 * resumable
    # bfloat16 kept checkpoints: every inner one at 2 bytes per weight; of 4 generations the 2 between in bfloat16
    half_preset = override(SMOKE, {"inner_train.kept_dtype": "bfloat16", "train.kept_dtype": "bfloat16",
                                   "outer.generations": 4, "train.keep_checkpoints": (10,)})
    half = P.disk_usage(half_preset).set_index("item")["bytes"]
    assert half["Connectome: 3 " + kept.format("0.410").replace("float32", "bfloat16")] == 6 * sparse(2, 0.8 ** 4)
    assert half["final checkpoint, generation 0 (float32, density 1.000; no optimizer state)"] == bare
    assert half["final checkpoint, generation 1 (bfloat16, density 0.800; analysed only)"] == sparse(2, 0.8)
    assert half["final checkpoint, generation 2 (bfloat16, density 0.640; analysed only)"] == sparse(2, 0.64)
    assert half["final checkpoint, generation 3 (float32, density 0.512; no optimizer state)"] == sparse(4, 0.512)
    assert half["1 earlier kept checkpoints, generation 0 (bfloat16, density 1.000)"] == 2 * N + P.SMALL_FILES
    assert half["1 earlier kept checkpoints, generation 3 (bfloat16, density 0.512)"] == sparse(2, 0.512)
    assert half["masks, generations 1.. (1 bit per weight, once per run)"] == 3 * masks


def test_tokens_from_shard_headers_and_the_catalog(tmp_path):
    tokens = tmp_path / "tokens"
    for name, n in [("english_prose_train_000002.bin", 5000), ("english_prose_train_000003.bin", 3000),
                    ("english_prose_small_000001.bin", 2000)]:
        write_shard(tokens / name, np.zeros(n, dtype=np.uint16))
    preset = override(SMOKE, {"data.tokens_dir": str(tokens)})
    plan = P.plan_study(preset, gpus=1)
    L, S = plan.tokens.iloc[0], plan.tokens.iloc[1]
    step = 4 * 64  # the loader's step: micro batch x seq_len x GPUs
    assert L["source"] == "shard headers" and L["shards"] == 2
    assert L["tokens available"] == (4999 // step + 2999 // step) * step == 7680
    assert L["tokens read"] == 2 * 20 * 512 and L["passes"] == pytest.approx(20480 / 7680)
    assert any("wraps to L's first token" in w for w in plan.warnings)
    assert S["tokens available"] == 1999 // 512 * 512 and S["tokens per pass needed"] == 5120
    assert P.token_needs(override(preset, {"data.outer_stream": "restart"}), 1).iloc[0]["tokens per pass needed"] \
        == 10240
    paper = P.token_needs(get_preset("gpt2-124m"), 8)  # FineWeb, not downloaded: the catalog's 1e8 per shard
    assert paper.iloc[0]["source"] == "catalog" and paper.iloc[0]["shards"] == 40
    assert paper.iloc[0]["tokens available"] == 40 * ((10 ** 8 - 1) // (32 * 1024 * 8)) * 32 * 1024 * 8
    unknown = P.token_needs(SMOKE, 1).iloc[0]
    assert unknown["tokens available"] is None and unknown["source"].startswith("unknown")


def test_micro_batch_that_fits():
    paper = override(get_preset("gpt2-124m"), {"train.loss_chunk": 0, "inner_train.loss_chunk": 0})  # whole logits
    assert P.micro_batches(paper.train, 8) == [64, 32, 16, 8, 4, 2, 1]
    assert P.micro_batches(override(paper, {"train.batch_size": 12}).train, 8) == []
    big = override(paper, {"train.micro_batch_size": 64})
    plan = P.plan_study(big, gpus=1, gpu="h100")
    assert not plan.micro_batch.loc["outer generation", "fits"]
    assert plan.micro_batch.loc["outer generation", "largest fitting"] == 32
    assert any("--set train.micro_batch_size=32 fits" in w for w in plan.warnings)
    assert P.fitting_micro_batch(paper, paper.train, P.get_gpu("a100-40gb"), 1) == 16
    total = P.training_memory(paper, paper.train, H100, 1, micro_batch=32)["total"]
    assert P.fitting_micro_batch(paper, paper.train, P.GPU("x", math.ceil(total / 0.9) + 1, "H100"), 1) == 32
    assert P.fitting_micro_batch(paper, paper.train, P.GPU("x", math.floor(total / 0.9) - 1, "H100"), 1) == 16
    chunked = get_preset("gpt2-124m")  # the chunked loss by default: a quarter of the head's memory per token
    assert chunked.train.loss_chunk and P.fitting_micro_batch(chunked, chunked.train, H100, 1) == 128
    assert P.plan_study(override(chunked, {"train.micro_batch_size": 64}), gpus=1, gpu="h100").micro_batch.loc[
        "outer generation", "fits"]


def test_launch_commands():
    one = P.launch_commands("gpt2-124m", [], 1)
    assert one["train"] == "genprune outer --preset gpt2-124m\ngenprune inner --preset gpt2-124m"
    eight = P.launch_commands("gpt2-124m", ["train.compile=true"], 8, hours=3.5)
    assert "torchrun --standalone --nproc_per_node=8 -m genprune_nb.cli outer --preset gpt2-124m " \
           "--set train.compile=true" in eight["train"]
    assert "#SBATCH --nodes=1" in eight["slurm"] and "#SBATCH --time=6:00:00" in eight["slurm"]
    sixteen = P.launch_commands("gpt2-124m", [], 16)
    assert "torchrun --nnodes=2 --nproc_per_node=8 " in sixteen["train"]
    assert "--rdzv_backend=c10d --rdzv_endpoint=$HEAD_NODE:29500" in sixteen["train"]
    assert "#SBATCH --nodes=2" in sixteen["slurm"]
    assert 'srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8' in sixteen["slurm"]
    assert '--rdzv_backend c10d --rdzv_endpoint "$head_node:29500"' in sixteen["slurm"]
    with pytest.raises(P.PlanError, match="--gpus 12 is not a multiple of --gpus-per-node 8"):
        P.launch_commands("gpt2-124m", [], 12)


def test_bad_inputs_name_themselves():
    with pytest.raises(P.PlanError, match="unknown --gpu 'tpu'; choose one of h100, h200, a100-80gb"):
        P.get_gpu("tpu")
    with pytest.raises(P.PlanError, match="--mfu must lie in"):
        P.plan_study(SMOKE, mfu=1.5)
    with pytest.raises(P.PlanError, match="--gpus must be at least 1"):
        P.plan_study(SMOKE, gpus=0)


@pytest.mark.parametrize("gpus", [1, 8])
def test_cli_plan_of_the_paper_preset(gpus, capsys):
    assert main(["plan", "--preset", "gpt2-124m", "--gpus", str(gpus), "--gpu", "h100"]) == 0
    out = capsys.readouterr().out
    assert f"plan: gpt2-124m on {gpus} x h100" in out
    assert "162,201,600 weights" in out and "854.7 MFLOPs" in out
    for section in ("memory per GPU", "time", "tokens", "disk", "finished study", "commands", "#SBATCH"):
        assert section in out
    assert ("torchrun --standalone --nproc_per_node=8" in out) == (gpus == 8)


def test_cli_plan_warns_and_refuses(capsys):
    whole_logits = ["--set", "train.micro_batch_size=64", "--set", "train.loss_chunk=0"]
    assert main(["plan", "--preset", "gpt2-124m", *whole_logits]) == 0
    assert "warning: outer generation:" in capsys.readouterr().out
    assert main(["plan", "--preset", "gpt2-124m", "--gpu", "tpu"]) == 2
    assert "unknown --gpu 'tpu'; choose one of h100, h200" in capsys.readouterr().err


def test_cli_plan_json(capsys):
    assert main(["plan", "--preset", "smoke", "--gpus", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["weights"] == N and plan["gpus"] == 2 and plan["flops_per_token"] == 9_854_976
    assert {row["phase"] for row in plan["compute"]} >= {"outer generation", "inner run"}
    assert plan["tokens"][0]["tokens available"] is None


def test_cli_defaults_are_the_plan_modules():
    from genprune_nb.cli import build_parser

    args = build_parser().parse_args(["plan"])
    assert (args.mfu, args.margin, args.gpu) == (P.DEFAULT_MFU, P.DEFAULT_MARGIN, "h100")
    plan_help = build_parser()._subparsers._group_actions[0].choices["plan"].format_help()
    assert all(name in plan_help for name in P.GPUS)


def test_binary_entropy_by_hand():
    from genprune_nb.stats import binary_entropy

    assert binary_entropy(0.5) == 1.0 and binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.25) == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)), rel=1e-12)
