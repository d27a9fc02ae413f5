"""``genprune``: the command line.

    genprune presets                         list the presets
    genprune prepare --preset tiny           tokenize the preset's corpus into token shards
    genprune train --preset tiny [--resume]  train (under torchrun: data parallel)
    genprune reproduce --preset tiny         the main job: prepare if needed, then train
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import PRESETS, ConfigError, Preset, dumps, get_preset, override


def _preset(args: argparse.Namespace) -> Preset:
    preset = get_preset(args.preset)
    return override(preset, args.set) if args.set else preset


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


def prepare(preset: Preset, *, overwrite: bool = False, progress: bool = True) -> dict:
    """Tokenize the preset's corpus (a data-catalog entry) into ``preset.data.tokens_dir``."""
    from .data import catalog
    from .data.prepare import prepare_files

    data = preset.data
    dataset = catalog.get(data.corpus)
    if not dataset.documents:
        raise ConfigError(
            f"corpus {data.corpus!r} is distributed as token shards, not text: "
            f"run catalog.download({data.corpus!r}, dest_dir={data.tokens_dir!r}) instead"
        )
    return prepare_files(catalog.text_files(data.corpus), data.tokens_dir, data.shard_prefix,
                         val_documents=data.val_documents, small_documents=data.small_documents,
                         overwrite=overwrite, progress=progress)


def cmd_prepare(args: argparse.Namespace) -> None:
    preset = _preset(args)
    if args.files:
        from .data.prepare import prepare_files

        summary = prepare_files(args.files, preset.data.tokens_dir, preset.data.shard_prefix,
                                val_documents=preset.data.val_documents,
                                small_documents=preset.data.small_documents, overwrite=args.overwrite,
                                progress=not args.no_progress)
    else:
        summary = prepare(preset, overwrite=args.overwrite, progress=not args.no_progress)
    t = summary["tokens"]
    print(f"wrote {t['train']:,} large-corpus (L), {t['small']:,} small-corpus (S) and {t['val']:,} val tokens "
          f"to {preset.data.tokens_dir}")


def _run_dir(args: argparse.Namespace, preset: Preset) -> Path:
    return Path(args.run_dir) if args.run_dir else Path("runs") / preset.name


def cmd_train(args: argparse.Namespace) -> None:
    from .launch import init_distributed, shutdown_distributed
    from .train import train

    preset = _preset(args)
    ctx = init_distributed(args.device)
    try:
        result = train(preset, _run_dir(args, preset), resume=args.resume, overwrite=args.overwrite,
                       until=args.until, ctx=ctx, progress=not args.no_progress)
    finally:
        shutdown_distributed()
    if ctx.is_main:
        val = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "n/a"
        print(f"trained {result.steps} steps into {result.run_dir}; final val loss {val}")


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .data.shards import find_shards

    preset = _preset(args)
    try:
        find_shards(preset.data.tokens_dir, preset.data.patterns("large"))
    except FileNotFoundError:
        prepare(preset, progress=not args.no_progress)
    args.overwrite = not args.resume
    cmd_train(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genprune", description=__doc__.split("\n")[1].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("--show", metavar="PRESET", help="print one preset in full")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("prepare", help="tokenize text into token shards")
    _add_preset_args(p)
    p.add_argument("--files", nargs="+", help="text files or glob patterns instead of the preset's corpus")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards of this prefix")
    p.set_defaults(func=cmd_prepare)

    for name, func, text in [("train", cmd_train, "train a model on the preset's shards"),
                             ("reproduce", cmd_reproduce, "the main job: prepare data if needed, then train")]:
        p = sub.add_parser(name, help=text)
        _add_preset_args(p)
        p.add_argument("--run-dir", help="output directory (default: runs/<preset>)")
        p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
        p.add_argument("--until", type=int, help="stop after this step with a checkpoint (resume later)")
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        if name == "train":
            p.add_argument("--overwrite", action="store_true", help="start afresh over an existing run")
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"genprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
