"""The `mlic-pipe` command: profile | train | check | preview | demo-data."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _load(data: str, split: str | None):
    from mlic_pipe.datasets import load

    return load(data, split=split or None)


def _cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from mlic_pipe.profile import profile_pipeline

    data = args.data_option or args.data
    index = _load(data, args.split)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    report = profile_pipeline(index, data=data, batch_size=args.batch_size, image_size=args.image_size,
                              mix=args.mix, device=args.device, steps=args.steps, warmup=args.warmup,
                              model=args.model, dtype=dtype, num_threads=args.threads, progress=not args.quiet)
    print(report.format())
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"\nwrote {args.json}")
    return 0


def _head_kwargs(pairs: list[str]) -> dict:
    """--head-arg num_heads=4 --head-arg lam=0.3 -> {"num_heads": 4, "lam": 0.3} (values read as JSON when they parse)."""
    import json

    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"mlic-pipe train: error: --head-arg wants KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def _cmd_train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from mlic_pipe.train import TrainConfig, train

    options = {name: value for name, value in vars(args).items() if name in TrainConfig.__dataclass_fields__}
    options["data"] = args.data_option or args.data
    options["head_kwargs"] = _head_kwargs(args.head_arg)
    result = train(TrainConfig(**options), progress=not args.quiet)
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:  # under torchrun, one rank speaks
        if result.final is not None:
            print(f"\nvalidation after epoch {len(result.history)}:\n{result.final.format()}")
            print(f"best mAP {100 * result.best_map:.2f} at epoch {result.best_epoch}")
        print(f"log and checkpoints in {result.out_dir}")
    if distributed:
        dist.destroy_process_group()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from mlic_pipe.check import check_index

    index = _load(args.data, args.split)
    report = check_index(index, progress=not args.quiet)
    print(f"dataset         {args.data}")
    print(report.format())
    if report.num_unusable:
        print(f"\n{report.num_unusable} files cannot be decoded: fix or remove them, or train with "
              "on_error='skip' (they are then counted and reported).", file=sys.stderr)
        return 1
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from mlic_pipe.preview import write_preview

    index = _load(args.data, args.split)
    mix = None if args.mix == "none" else args.mix
    write_preview(index, args.out, mix=mix, batch_size=args.batch_size, image_size=args.size, seed=args.seed)
    print(f"wrote {args.out}: {args.batch_size} regular images of {args.data} and their {args.mix} outputs "
          f"(mixed tiles outlined)")
    return 0


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from mlic_pipe.datasets.demo import build_demo, ensure_demo

    root = build_demo(Path(args.dir), seed=args.seed) if args.dir else ensure_demo()
    print(f"demo data in {root}")
    print(f"  train: {root / 'annotations' / 'instances_train.json'} (images in {root / 'train'})")
    print(f"  val:   {root / 'annotations' / 'instances_val.json'} (images in {root / 'val'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlic-pipe", description="GPU data pipeline for multi-label image "
                                     "classification: DALI decode + one fused Triton SpliceMix kernel.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_help = ("dataset: 'demo' (built-in), a COCO .json or root, a VOCdevkit, a NUS-WIDE root, "
                 "or a path,labels .csv (default: demo)")

    profile = commands.add_parser("profile", help="time the data pipeline end to end (the main job)")
    profile.add_argument("data", nargs="?", default="demo", help=data_help)
    profile.add_argument("--split", help="split to read (train, val, trainval, test; reader-dependent)")
    profile.add_argument("--data", dest="data_option", metavar="DATA", help="same as the positional DATA")
    profile.add_argument("--batch-size", type=int, default=32, help="images read per step, B (default 32)")
    profile.add_argument("--image-size", type=int, default=448, help="image size S (default 448)")
    profile.add_argument("--mix", default="splicemix", choices=["splicemix", "cutmix", "fmix", "mixup", "none"],
                         help="augmentation (default splicemix, the paper's default mode)")
    profile.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    profile.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                         help="output image dtype (default float32)")
    profile.add_argument("--steps", type=int, default=20, help="steps timed (default 20)")
    profile.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    profile.add_argument("--model", help="also time a timm model's forward + backward, e.g. resnet50 (random init)")
    profile.add_argument("--threads", type=int, help="DALI CPU threads (default: CPU count, at most 8)")
    profile.add_argument("--json", help="also write the numbers to this JSON file")
    profile.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    profile.set_defaults(run=_cmd_profile)

    train = commands.add_parser("train", help="train a multi-label classifier on the loader (reference trainer)",
                                description="Train any timm backbone + head + loss + mix with MLICLoader; "
                                            "evaluates every epoch, logs JSON lines, checkpoints, resumes; "
                                            "run under torchrun for DDP.")
    train.add_argument("data", nargs="?", default="demo", help=data_help)
    train.add_argument("--data", dest="data_option", metavar="DATA", help="same as the positional DATA")
    train.add_argument("--train-split", default="train", help="training split (default train; VOC: trainval)")
    train.add_argument("--val-split", default="val", help="validation split (default val; VOC: test)")
    train.add_argument("--val-data", help="a separate validation dataset (needed when DATA is one annotation file)")
    train.add_argument("--backbone", default="resnet50", help="any timm model (default resnet50)")
    train.add_argument("--head", default="avg", choices=["avg", "max", "csra", "mldecoder", "graph"],
                       help="classification head (default avg)")
    train.add_argument("--head-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="head option, repeatable, e.g. --head-arg num_heads=4 --head-arg lam=0.1")
    train.add_argument("--pretrained", action="store_true", help="start from timm's pretrained weights (needs them "
                       "downloaded or cached)")
    train.add_argument("--loss", default="asl", choices=["asl", "aam", "bce"], help="base loss (default asl)")
    train.add_argument("--mix", default="splicemix", choices=["splicemix", "cutmix", "fmix", "mixup", "none"],
                       help="augmentation (default splicemix)")
    train.add_argument("--mix-append", action="store_true",
                       help="mask mixes: append B/4 mixed images, keeping the sources (needed by --sumix)")
    train.add_argument("--splicemix-cl", action="store_true", help="add the SpliceMix-CL consistency loss")
    train.add_argument("--cl-weight", type=float, default=1.0, help="weight of SpliceMix-CL (default 1)")
    train.add_argument("--sumix", action="store_true", help="SUMix learned mix ratio for mask mixes (with --mix-append)")
    train.add_argument("--sumix-gamma", type=float, default=0.5, help="SUMix uncertainty weight (default 0.5)")
    train.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    train.add_argument("--batch-size", type=int, default=32, help="images read per step per rank (default 32)")
    train.add_argument("--image-size", type=int, default=448, help="image size S (default 448)")
    train.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"], help="default adamw")
    train.add_argument("--lr", type=float, help="head learning rate (default 1e-4 adamw, 0.05 sgd)")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="default 1e-4")
    train.add_argument("--backbone-lr-mult", type=float, default=0.1, help="backbone lr = lr x this (default 0.1)")
    train.add_argument("--schedule", default="cosine", choices=["cosine", "onecycle", "step"],
                       help="lr schedule after warmup (default cosine)")
    train.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warmup (default 1 epoch)")
    train.add_argument("--step-size", type=int, default=10, help="step schedule: epochs per decay (default 10)")
    train.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                       help="mixed precision (default auto: bf16 on CUDA, off on CPU)")
    train.add_argument("--ema", type=float, help="keep EMA weights with this decay (e.g. 0.9997) and evaluate them too")
    train.add_argument("--channels-last", action="store_true", help="channels_last images and model")
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    train.add_argument("--threads", type=int, help="DALI CPU threads (default: CPU count, at most 8)")
    train.add_argument("--seed", type=int, default=0, help="fixes init, order, crops and plans (default 0)")
    train.add_argument("--out-dir", default="runs/mlic", help="log.jsonl, last.pt, best.pt (default runs/mlic)")
    train.add_argument("--resume", help="continue from a checkpoint, or 'auto' for OUT_DIR/last.pt")
    train.add_argument("--limit-train-batches", type=int, help="stop every epoch after this many steps (smoke runs)")
    train.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                       help="undecodable images: raise (default) or skip and report")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_cmd_train)

    check = commands.add_parser("check", help="inspect a dataset: labels, class frequencies, unusable or odd files")
    check.add_argument("data", nargs="?", default="demo", help=data_help)
    check.add_argument("--split", help="split to read (train, val, trainval, test; reader-dependent)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=_cmd_check)

    preview = commands.add_parser("preview", help="render one mixed batch as a captioned PNG grid")
    preview.add_argument("data", nargs="?", default="demo", help=data_help)
    preview.add_argument("--split", help="split to read (train, val, trainval, test; reader-dependent)")
    preview.add_argument("--mix", default="splicemix", choices=["splicemix", "cutmix", "fmix", "mixup", "none"],
                         help="augmentation (default splicemix, the paper's default mode)")
    preview.add_argument("--out", default="batch.png", help="PNG to write (default batch.png)")
    preview.add_argument("--batch-size", type=int, default=16, help="regular images in the batch (default 16)")
    preview.add_argument("--size", type=int, default=224, help="image size S (default 224)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the images picked and of the plan")
    preview.set_defaults(run=_cmd_preview)

    demo = commands.add_parser("demo-data", help="build the built-in demo dataset (COCO format)")
    demo.add_argument("dir", nargs="?", help="where to write it (default: the user cache, reused by every command)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the composition (default 0)")
    demo.set_defaults(run=_cmd_demo_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mlic_pipe.errors import MLICDataError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MLICDataError as error:
        print(f"mlic-pipe: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
