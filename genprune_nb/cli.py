"""``genprune``: the command line.

    genprune presets                         list the presets
    genprune prepare --preset tiny           the preset's val / S / L token shards (tokenized, or downloaded)
    genprune train --preset tiny [--resume]  one plain training run (under torchrun: data parallel)
    genprune outer --preset tiny             the outer loop: generations of training and pruning -> connectome
    genprune inner --preset tiny             the inner loop: every condition x seed on the small corpus
    genprune eval --task hellaswag mmlu      score a study's kept checkpoints (or one --checkpoint)
    genprune reproduce --preset tiny         the main job: the numbered notebooks, in order, with papermill
    genprune plan --preset gpt2-124m --gpus 8 --gpu h100   what the study costs: memory, time, tokens, disk, commands

Data sets missing from every data directory are downloaded on first use; --offline (or GENPRUNE_OFFLINE=1) makes
that an error naming the data set and the folders searched.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import PRESETS, Preset, dumps, get_preset, override
from .connectome.pruning import CRITERIA
from .data.fetch import OFFLINE_ENV
from .errors import GenpruneError
from .storage.writable import require_writable

TRACEBACK_ENV = "GENPRUNE_TRACEBACK"  # set to 1 to see the traceback of an error the CLI would print in one line


def _preset(args: argparse.Namespace) -> Preset:
    preset = get_preset(args.preset)
    return override(preset, args.set) if args.set else preset


def _add_offline_arg(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    p.add_argument("--offline", action="store_true", default=default,
                   help=f"never download: a missing data set is an error naming it (or set {OFFLINE_ENV}=1)")


def _add_preset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)} (default: tiny)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")


def cmd_presets(args: argparse.Namespace) -> None:
    for name, preset in PRESETS.items():
        m, t = preset.model, preset.train
        print(f"{name:10s} L={m.n_layer:<2d} H={m.n_head:<2d} C={m.n_embd:<4d} T={t.seq_len:<4d} "
              f"batch={t.batch_size:<3d} steps={t.steps:<5d} corpus={preset.data.corpus:13s} {preset.description}")
    if args.show:
        print(dumps(get_preset(args.show)))


def cmd_prepare(args: argparse.Namespace) -> None:
    preset = _preset(args)
    if args.files:
        from .data.prepare import prepare_files

        summary = prepare_files(args.files, preset.data.tokens_dir, preset.data.shard_prefix,
                                val_documents=preset.data.val_documents,
                                small_documents=preset.data.small_documents, overwrite=args.overwrite,
                                progress=not args.no_progress, tokenizer=preset.model.tokenizer)
    else:
        from .data import catalog
        from .data.prepare import corpora_summary, fetch_corpora, prepare_corpora, prepared

        if not args.overwrite and prepared(preset):
            tokens = corpora_summary(preset).set_index("corpus")["tokens"]
            print(f"already prepared: {tokens['large']:,} large-corpus (L), {tokens['small']:,} small-corpus (S) and "
                  f"{tokens['val']:,} val tokens in {preset.data.tokens_dir} (--overwrite tokenizes them again)")
            return
        if not catalog.get(preset.data.corpus).documents:  # a corpus of token shards (FineWeb): download them
            fetched = fetch_corpora(preset, progress=not args.no_progress)
            print(f"{len(fetched)} shards of {preset.data.corpus} in {preset.data.tokens_dir}")
            return
        summary = prepare_corpora(preset, overwrite=args.overwrite, progress=not args.no_progress)
    t = summary["tokens"]
    print(f"wrote {t['train']:,} large-corpus (L), {t['small']:,} small-corpus (S) and {t['val']:,} val tokens "
          f"to {preset.data.tokens_dir}")


def _run_dir(args: argparse.Namespace, preset: Preset) -> Path:
    from .study.layout import StudyLayout

    return Path(args.run_dir) if args.run_dir else StudyLayout.of(preset).plain_run


def cmd_train(args: argparse.Namespace) -> None:
    from .launch import init_distributed, shutdown_distributed
    from .training.loop import train

    preset = _preset(args)
    run_dir = require_writable(_run_dir(args, preset), "run dir")
    ctx = init_distributed(args.device)
    try:
        result = train(preset, run_dir, resume=args.resume, overwrite=args.overwrite,
                       until=args.until, ctx=ctx, progress=not args.no_progress)
    finally:
        shutdown_distributed()
    if ctx.is_main:
        val = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "n/a"
        print(f"trained {result.steps} steps into {result.run_dir}; final val loss {val}")


def cmd_loop(args: argparse.Namespace) -> None:
    from .launch import init_distributed, shutdown_distributed
    from .study.generations import run_inner_loop, run_outer_loop
    from .study.layout import StudyLayout

    preset = _preset(args)
    study = require_writable(StudyLayout.of(preset, args.run_root).root, "study folder")
    ctx = init_distributed(args.device)
    try:
        if args.command == "outer":
            connectome = run_outer_loop(preset, study, criterion=args.criterion, overwrite=args.overwrite, ctx=ctx,
                                        progress=not args.no_progress)
            path = StudyLayout(study).final_connectome(connectome.meta["criterion"])
            summary = f"connectome of density {connectome.density():.4f} in {path}"
        else:
            refs = run_inner_loop(preset, study, conditions=tuple(args.conditions) if args.conditions else None,
                                  overwrite=args.overwrite, ctx=ctx, progress=not args.no_progress)
            summary = f"{len(refs)} kept inner-loop checkpoints in {study}/inner"
    finally:
        shutdown_distributed()
    if ctx.is_main:
        print(summary)


def cmd_eval(args: argparse.Namespace) -> None:
    from .evals import evaluate, labels, preset_sizes
    from .training.checkpoint import resolve_checkpoint

    if args.out:
        require_writable(Path(args.out).parent, "folder of --out")
    # the preset's eval budget, as the notebooks use it, so the rows land under the same task labels
    budget = resolve_checkpoint(args.checkpoint).preset() if args.checkpoint else get_preset(args.preset)
    sizes = {"limit": args.limit} if args.full else preset_sizes(budget, limit=args.limit)
    common = dict(sizes=sizes, device=args.device, batch_size=args.batch_size, progress=not args.no_progress)
    if args.checkpoint:
        df = evaluate(args.checkpoint, args.task, table=args.out, **common)
    else:
        from .study.layout import StudyLayout

        root = require_writable(StudyLayout.of(args.preset, args.run_root).root, "study folder")  # its results.csv
        df = evaluate(root, args.task, conditions=args.conditions, final_only=args.final_only, **common)
        df = df[df["task"].isin(labels(args.task, sizes))]
    breakdown = df.filter(["subject", "paradigm", "phenomenon"]).columns
    print(df[df[breakdown].isna().all(axis=1)].drop(columns=breakdown).to_string(index=False))


def _notebook_parameter(text: str) -> tuple[str, object]:
    """NAME=VALUE with VALUE read as JSON where it parses (numbers, lists, null), else as a string."""
    import json

    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--param {text!r}: expected NAME=VALUE, e.g. --param limit=200")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .study.pipeline import run_pipeline

    executed = run_pipeline(args.preset, overrides=args.set, run_root=args.run_root, figures_dir=args.figures_dir,
                            only=args.only, parameters=dict(_notebook_parameter(p) for p in args.param),
                            device=args.device, progress=not args.no_progress)
    print("executed " + ", ".join(str(p) for p in executed))


def _size(n: float | None) -> str:
    if n is None or n != n:
        return "unknown"
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n)} B"


def _count(n: float | None, missing: str = "unknown") -> str:
    return missing if n is None or n != n else f"{int(n):,}"


def _hours(h: float | None) -> str:
    return "unknown" if h is None or h != h else (f"{h:,.2f} h" if h >= 1 else f"{60 * h:,.1f} min")


def format_plan(plan) -> str:
    """The text ``genprune plan`` prints."""
    from .model.gpt import flops_per_token
    from .study.plan import weight_count

    p, gpu = plan.preset, plan.gpu
    peak = f"{plan.peak_flops / 1e12:,.0f} TFLOP/s bf16" if plan.peak_flops else "peak FLOP/s unknown"
    lines = [f"plan: {p.name} on {plan.gpus} x {gpu.name} ({gpu.memory_bytes / 2 ** 30:.1f} GiB, {peak}), "
             f"MFU {plan.mfu:.2f}, data parallel",
             f"model: {weight_count(p):,} weights; {flops_per_token(p.model, p.train.seq_len) / 1e6:,.1f} MFLOPs per "
             f"training token (6 x matmul weights + attention)", "", "memory per GPU"]
    memory = plan.memory.map(_size)
    lines += [memory.to_string(), ""]
    mb = plan.micro_batch.astype(object).where(plan.micro_batch.notna(), "none")
    lines += [mb.to_string(), "", "time"]
    compute = plan.compute.copy()
    for col in ("train tokens per run", "val tokens per run"):
        compute[col] = compute[col].map(lambda v: _count(v, ""))
    compute["FLOPs per token"] = compute["FLOPs per token"].map(lambda v: "" if v != v or v is None
                                                                else f"{v / 1e6:,.1f}M")
    compute["FLOPs per run"] = compute["FLOPs per run"].map(lambda v: "" if v != v or v is None else f"{v:.3g}")
    compute["hours per run"] = compute["hours per run"].map(lambda h: "" if h is None or h != h else _hours(h))
    compute["hours"] = compute["hours"].map(_hours)
    lines += [compute.to_string(index=False), *(f"  {note}" for note in plan.notes), "", "tokens"]
    tokens = plan.tokens.copy()
    for col in ("tokens read", "tokens per pass needed", "tokens available", "shards"):
        tokens[col] = tokens[col].map(_count)
    tokens["passes"] = tokens["passes"].map(lambda v: "unknown" if v is None or v != v else f"{v:.2f}")
    lines += [tokens.drop(columns="reading").to_string(index=False)]
    lines += [f"  {row['corpus']}: {row['reading']}" for _, row in plan.tokens.iterrows()]
    lines += ["", "disk"]
    disk = plan.disk.copy()
    finished = disk[disk["part"] != "while training"]
    for col in ("bytes each", "bytes"):
        disk[col] = disk[col].map(_size)
    lines += [disk.to_string(index=False)]
    for part in ("outer", "inner", "data"):
        lines.append(f"  {part}: {_size(finished.loc[finished['part'] == part, 'bytes'].sum())}")
    lines.append(f"  finished study: {_size(finished['bytes'].sum())}")
    lines += ["", "commands", "# prepare the data once (a shared file system for several nodes)",
              plan.commands["prepare"], plan.commands["train"], "", "# Slurm: sbatch genprune.sbatch",
              plan.commands["slurm"]]
    if plan.warnings:
        lines += ["", *(f"warning: {w}" for w in plan.warnings)]
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> None:
    import json

    from .study.plan import plan_study

    plan = plan_study(_preset(args), gpus=args.gpus, gpu=args.gpu, mfu=args.mfu, margin=args.margin,
                      flash=not args.no_flash, peak_flops=args.peak_tflops * 1e12 if args.peak_tflops else None,
                      overrides=args.set, gpus_per_node=args.gpus_per_node)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, default=str))
        return
    print(format_plan(plan))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genprune", description=__doc__.split("\n")[0].strip("`"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--traceback", action="store_true",
                        help=f"show the traceback of errors otherwise reported in one line (or set {TRACEBACK_ENV}=1)")
    _add_offline_arg(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("--show", metavar="PRESET", help="print one preset in full")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("prepare", help="tokenize text into token shards")
    _add_preset_args(p)
    p.add_argument("--files", nargs="+", help="text files or glob patterns instead of the preset's corpus")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards of this prefix")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="one plain training run on the preset's large corpus")
    _add_preset_args(p)
    p.add_argument("--run-dir", help="output directory (default: runs/<preset>/train)")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an existing run")
    p.add_argument("--until", type=int, help="stop after this step with a checkpoint (resume later)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=cmd_train)

    for name, text in [("outer", "the outer loop: generations of training and pruning (resumable)"),
                       ("inner", "the inner loop: conditions x seeds on the small corpus (resumable)")]:
        p = sub.add_parser(name, help=text)
        _add_preset_args(p)
        p.add_argument("--run-root", help="the study's folder (default: runs/<preset>)")
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        p.add_argument("--overwrite", action="store_true",
                       help="redo the runs made with another recipe (refused by default, naming what differs)")
        if name == "outer":
            p.add_argument("--criterion", choices=CRITERIA,
                           help="pruning criterion (default: the preset's outer.criterion, magnitude)")
        else:
            p.add_argument("--conditions", nargs="+", help="default: the preset's inner.conditions; also "
                           "TrainedSparse, TrainedDense, Distilled (what else the outer loop hands down); a criterion "
                           "in brackets picks another outer loop's connectome, e.g. 'Connectome[attribution]'")
        p.set_defaults(func=cmd_loop)

    p = sub.add_parser("eval", help="registered benchmarks (language, reading times, brain) of checkpoints")
    p.add_argument("--task", nargs="+", default=["hellaswag", "mmlu", "blimp"],
                   help="registered benchmarks (genprune_nb.evals.all_benchmarks()): val_loss, hellaswag(_lmeval), mmlu, "
                        "mmlu_lmeval_0shot, mmlu_lmeval_5shot, blimp(_lmeval), reading_times, brain_encoding, "
                        "brain_encoding_localized")
    p.add_argument("--checkpoint", help="one checkpoint (step_* folder, or a run folder: its latest)")
    p.add_argument("--out", help="with --checkpoint: also add the rows to this results CSV")
    p.add_argument("--preset", default="tiny", help="the study of runs/<preset> (without --checkpoint)")
    p.add_argument("--run-root", help="the study's folder (default: runs/<preset>)")
    p.add_argument("--conditions", nargs="+", help="only these inner-loop conditions")
    p.add_argument("--final-only", action="store_true", help="only the last checkpoint of every run")
    p.add_argument("--limit", type=int, help="items per benchmark: N in all round-robin over subjects / paradigms, "
                                             "the first N of each for the *_lmeval tasks as in lm-eval (default: "
                                             "the preset's eval.limit; stored as task@limit)")
    p.add_argument("--full", action="store_true",
                   help="score everything, not the preset's eval budget (limit, stories, max_words, n_sentences) "
                        "that the notebooks use by default; rows are stored under the bare benchmark names")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("reproduce", help="the main job: run the numbered notebooks in order (resumable)")
    _add_preset_args(p)
    p.add_argument("--run-root", help="the study's folder (default: runs/<preset>)")
    p.add_argument("--figures-dir", help="where figures go (default: figures/<preset>)")
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, e.g. --only 00 01")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a notebook parameter, e.g. --param limit=200 --param stories=[1,2] (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("plan", help="what a study costs: GPU memory, time, tokens of L and S, disk, launch commands")
    _add_preset_args(p)
    p.add_argument("--gpus", type=int, default=1, help="GPUs in all, data parallel (default 1)")
    # defaults of genprune_nb.study.plan, named here so that the parser does not import torch (tests/test_plan.py)
    p.add_argument("--gpu", default="h100", help="h100 (default), h200, a100-80gb, a100-40gb, l4, a10, 4090 or cpu")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node for multi-node commands (default 8)")
    p.add_argument("--mfu", type=float, default=0.27,
                   help="model FLOPs utilisation the times assume (default 0.27; llm.c reaches ~0.38)")
    p.add_argument("--margin", type=float, default=0.1, help="fraction of GPU memory kept free (default 0.1)")
    p.add_argument("--peak-tflops", type=float, help="peak bf16 TFLOP/s instead of the GPU table's (needed for cpu)")
    p.add_argument("--no-flash", action="store_true", help="activations of the math attention backend")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)
    for p in sub.choices.values():  # --offline after the command too (SUPPRESS keeps a --offline given before it)
        _add_offline_arg(p)
    return parser


def reported_in_one_line(error: BaseException) -> bool:
    """Errors of bad input or of the environment (the package's own, ValueError, OSError, a diverged loss).

    Anything else (TypeError, KeyError, IndexError, a RuntimeError from torch) is a bug and keeps its traceback.
    """
    return isinstance(error, (GenpruneError, ValueError, OSError, FloatingPointError))


def one_line(error: BaseException) -> str:
    """The error's message on one line; an OSError as "<reason>: <path>" (e.g. No space left on device: runs/x)."""
    if isinstance(error, OSError) and not isinstance(error, GenpruneError) and error.strerror and error.filename:
        text = f"{error.strerror}: {error.filename}" + (f" -> {error.filename2}" if error.filename2 else "")
    else:
        text = str(error) or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_traceback = args.traceback or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    offline_before = os.environ.get(OFFLINE_ENV)
    if args.offline:  # in the environment, so that notebooks and workers the command starts are offline too
        os.environ[OFFLINE_ENV] = "1"
    try:
        args.func(args)
    except KeyboardInterrupt:
        if show_traceback:
            raise
        print(f"genprune {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if show_traceback or not reported_in_one_line(e):
            raise
        print(f"genprune {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if args.offline and offline_before is None:
            os.environ.pop(OFFLINE_ENV, None)
        elif args.offline:
            os.environ[OFFLINE_ENV] = offline_before
    return 0


if __name__ == "__main__":
    sys.exit(main())
