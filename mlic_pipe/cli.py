"""The `mlic-pipe` command: profile | check | preview | demo-data."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _load(data: str, split: str | None):
    from mlic_pipe.datasets import load

    kw = {"split": split} if split else {}
    return load(data, **kw)


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
