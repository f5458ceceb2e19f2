"""The `mlic-pipe` command: profile | train | study | check | preview | shard | demo-data.

Choices come from the registries (mixers, heads, losses, optimizers, schedules) and the train
command's flags from `TrainConfig`'s fields, so nothing here retypes an option. Library errors
refer to options by name; `main` spells them as this command's flags (`FLAGS`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import MISSING, Field, fields
from pathlib import Path

from mlic_pipe.datasets.index import MISSING_FILES
from mlic_pipe.errors import ON_ERROR, ConfigError, LoaderStateError, MLICDataError

__all__ = ["FLAGS", "build_parser", "main"]

DATA_HELP = ("dataset: 'demo' (built-in), a COCO .json or root, a VOCdevkit, a NUS-WIDE root (as released or "
             "rearranged), a .csv (path,labels, or ASL's nus_wid_data.csv), a .txt list of '<path> <0/1 per class>' "
             "lines (with --classes), an Open Images folder (V6/V7 label files), a shard directory written by `mlic-pipe shard`, a Hugging Face `save_to_disk` "
             "folder, or other people's WebDataset tars (a folder of .tar, a tar, or a {000..009} pattern; with "
             "--classes) (default: demo)")
# How library option names read on this command line, where they differ from --name-with-dashes NAME.
FLAGS = {"image_dir": "--images DIR", "head_kwargs": "--head-arg KEY=VALUE", "loss_kwargs": "--loss-arg KEY=VALUE",
         "val_data": "--val-data DATA",
         "out_dir": "--out-dir DIR", "resume": "--resume PATH", "ema": "--ema DECAY", "num_threads": "--threads N",
         "render_threads": "--render-threads N",
         "split": "--split SPLIT", "shard_root": "--shard-root URL", "classes": "--classes FILE", "label_key": "--label-key EXT[:FIELD]",
         "samples_per_shard": "--samples-per-shard N", "shard_bytes": "--shard-bytes SIZE", "missing": "--missing drop|raise", "on_error": "--on-error skip|raise"}


class _Parser(argparse.ArgumentParser):
    """argparse, with an error as one line (what is wrong, with which flag, and where the help is)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _names_from(choices):
    """An argparse type: one name of `choices`, or several joined by commas (a mix schedule)."""
    def parse(text: str) -> str:
        names = [name.strip() for name in text.split(",")]
        wrong = [name for name in names if name not in choices]
        if wrong or not all(names):
            raise argparse.ArgumentTypeError(f"{', '.join(wrong) or repr(text)}: choose from {', '.join(choices)} "
                                             "(several joined by commas)")
        return ",".join(names)
    parse.__name__ = "names"
    return parse


def _at_least(low: int):
    """An argparse type: an integer of at least `low` (argparse names the flag in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def _output_file(flag: str, path: str | None) -> None:
    """Refuse an output file in a missing folder before any work is done (not after the whole run)."""
    if path and not Path(path).resolve().parent.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {Path(path).resolve().parent} does not exist: create it first")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (pytest and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property always reads sys.stderr
        pass


def _configure_logging(quiet: bool) -> None:
    """The package logs through `logging`; the command shows its INFO lines as plain text on stderr."""
    logger = logging.getLogger("mlic_pipe")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _load(args: argparse.Namespace, **kw):
    from mlic_pipe.datasets import load

    args.data = args.data_option or args.data
    if args.images:
        kw["image_dir"] = args.images
    if getattr(args, "shard_root", None):
        kw["shard_root"] = args.shard_root
    if getattr(args, "classes", None):
        kw["classes"] = args.classes
    if getattr(args, "label_key", None):
        kw["label_key"] = args.label_key
    if getattr(args, "unverified", None) not in (None, "negative"):
        kw["unverified"] = args.unverified
    if getattr(args, "machine_threshold", None) is not None:
        kw["machine_threshold"] = args.machine_threshold
    return load(args.data, split=args.split or None, **kw)


def _dtypes() -> dict:
    from mlic_pipe.mix.settings import OUT_DTYPES

    return {str(dtype).removeprefix("torch."): dtype for dtype in OUT_DTYPES}


def _cmd_profile(args: argparse.Namespace) -> int:
    from mlic_pipe.profile import profile_pipeline

    _output_file("--json", args.json)
    index = _load(args, missing=args.missing)
    report = profile_pipeline(index, data=args.data, batch_size=args.batch_size, image_size=args.image_size,
                              mix=args.mix, device=args.device, steps=args.steps, warmup=args.warmup,
                              model=args.model, dtype=_dtypes()[args.dtype], num_threads=args.threads,
                              on_error=args.on_error, progress=not args.quiet, auto_augment=args.auto_augment,
                              render_threads=args.render_threads)
    print(report.format())
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"\nwrote {args.json}")
    return 0


def _key_values(pairs: list[str], name: str) -> dict:
    """["num_heads=4", "lam=0.3"] -> {"num_heads": 4, "lam": 0.3} (values read as JSON when they parse)."""
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{{{name}}} wants KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def _train_options(args: argparse.Namespace) -> dict:
    """TrainConfig fields: the recipe's settings (if any), overridden by every flag given."""
    from mlic_pipe.training import TrainConfig
    from mlic_pipe.training.recipes import recipe_settings

    options = recipe_settings(args.recipe) if args.recipe else {}
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    for name in ("head_kwargs", "loss_kwargs"):  # --head-arg / --loss-arg add to the recipe's options
        if name in given:
            given[name] = {**options.get(name, {}), **_key_values(given[name], name)}
    options.update(given)
    if getattr(args, "data_option", None):
        options["data"] = args.data_option
    return options


def _list_recipes() -> int:
    from mlic_pipe.training.recipes import RECIPES

    for name in RECIPES:
        recipe = RECIPES.create(name)
        print(f"{name}: {RECIPES.help(name)}")
        print("  settings: " + ", ".join(f"{k}={v}" for k, v in recipe.settings.items()))
        print(f"  source: {recipe.source}")
        if recipe.differences:
            print(f"  not reproduced: {recipe.differences}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mlic_pipe.distributed import is_distributed, is_main_process
    from mlic_pipe.training import TrainConfig, train

    if args.list_recipes:
        return _list_recipes()
    result = train(TrainConfig(**_train_options(args)), progress=not args.quiet)
    if is_main_process():  # under torchrun, one rank speaks
        if result.final is not None:
            print(f"\nvalidation after epoch {len(result.history)}:\n{result.final.format()}")
            print(f"best mAP {100 * result.best_map:.2f} at epoch {result.best_epoch}")
        print(f"log and checkpoints in {result.out_dir}")
    if is_distributed():
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from mlic_pipe.study import run_study, summarize
    from mlic_pipe.study.chart import ChartUnavailable, draw_curves

    base = _train_options(args)
    out = Path(base.pop("out_dir", "runs/study"))
    for name in ("seed", "mix", "splicemix_cl", "resume"):  # the grid sets these per run
        base.pop(name, None)
    configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    logs = run_study(base, configs, seeds, out, progress=not args.quiet)
    summary = summarize(logs)
    out.mkdir(parents=True, exist_ok=True)
    command = "mlic-pipe " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["study"] else "run_study(...)"
    (out / "study.md").write_text(f"# Study: {', '.join(configs)} x seeds {args.seeds}\n\n"
                                  f"Command: `{command}`\n\nLast epoch, validation, % (mean ± std over seeds):"
                                  f"\n\n{summary.table()}\n")
    (out / "study.json").write_text(summary.to_json())
    print(summary.table())
    try:
        draw_curves(summary, out / "study.png")
    except ChartUnavailable as error:
        print(f"\nwrote {out / 'study.md'} and {out / 'study.json'}; no study.png: {error}")
        return 0
    print(f"\nwrote {out / 'study.md'}, {out / 'study.json'} and {out / 'study.png'}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from mlic_pipe.check import check_index

    index = _load(args, missing="keep")  # missing files are listed with the other unusable ones
    report = check_index(index, progress=not args.quiet)
    print(f"dataset         {args.data}")
    print(report.format())
    if report.num_unusable:
        print(f"\n{report.num_unusable} files are missing or cannot be decoded: fix or remove them, or train with "
              "--on-error skip and --missing drop (they are then counted and reported).", file=sys.stderr)
        return 1
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from mlic_pipe.mix.erasing import erasers
    from mlic_pipe.preview import write_preview

    _output_file("--out", args.out)
    index = _load(args, missing=args.missing)
    erase = erasers(args.cutout, args.reprob, args.remode)
    write_preview(index, args.out, mix=args.mix, batch_size=args.batch_size, image_size=args.size, seed=args.seed,
                  crop=args.crop, auto_augment=args.auto_augment, erase=erase, normalize=not args.no_normalize)
    extras = ", ".join(f"{name} {value}" for name, value in (("crop", args.crop), ("auto-augment", args.auto_augment),
                                                            ("cutout", args.cutout), ("reprob", args.reprob)) if value)
    print(f"wrote {args.out}: the first training batch of {args.data} ({args.batch_size} images, {args.mix}"
          f"{', ' + extras if extras else ''}; mixed tiles outlined)")
    return 0


def _cmd_shard(args: argparse.Namespace) -> int:
    from mlic_pipe.shards import verify_shards, write_shards

    args.data_option = None
    index = _load(args, missing=args.missing)
    manifest = write_shards(index, args.out_dir, samples_per_shard=args.samples_per_shard,
                            shard_bytes=args.shard_bytes, progress=not args.quiet)
    total = sum(shard["bytes"] for shard in manifest["shards"])
    print(f"wrote {len(manifest['shards'])} shard(s), {manifest['num_samples']} samples of "
          f"{len(manifest['classes'])} classes, {total / 2 ** 20:.1f} MiB, into {args.out_dir}")
    if args.verify:
        count = verify_shards(args.out_dir, index, progress=not args.quiet)
        print(f"verified: all {count} samples read back, bytes and labels equal to {args.data}")
    return 0


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from mlic_pipe.datasets.demo import build_demo, ensure_demo

    root = build_demo(Path(args.dir), seed=args.seed) if args.dir else ensure_demo()
    print(f"demo data in {root}")
    print(f"  train: {root / 'annotations' / 'instances_train.json'} (images in {root / 'train'})")
    print(f"  val:   {root / 'annotations' / 'instances_val.json'} (images in {root / 'val'})")
    return 0


def _add_data_options(parser: argparse.ArgumentParser, missing: bool = True) -> None:
    parser.add_argument("data", nargs="?", default="demo", help=DATA_HELP)
    parser.add_argument("--data", dest="data_option", metavar="DATA", help="same as the positional DATA")
    parser.add_argument("--split", help="split to read (train, val, trainval, test; reader-dependent)")
    parser.add_argument("--images", metavar="DIR", help="image folder: of a COCO-format .json outside COCO's own "
                        "layout, a NUS-WIDE root's images, what a list file's or CSV's paths are relative to")
    parser.add_argument("--classes", metavar="FILE", help="class names, one a line: a .txt list file's columns, "
                        "a CSV's column order, the classes of other people's WebDataset tars or a Hugging Face "
                        "label column of names")
    parser.add_argument("--label-key", metavar="EXT[:FIELD]", help="other people's WebDataset tars: the member that "
                        "holds the labels and its field (default json:labels; cls, txt, json:meta.tags)")
    parser.add_argument("--unverified", default="negative", choices=("negative", "ignore"), help="Open Images: a "
                        "class no human verified for an image is a negative (default) or unknown (ignore)")
    parser.add_argument("--machine-threshold", type=float, metavar="T", help="Open Images: also read the "
                        "machine-generated labels, those of confidence >= T as positives")
    parser.add_argument("--shard-root", metavar="URL", help="where a shard directory's tars and index files are, "
                        "when not beside its dataset.json (e.g. s3://bucket/prefix)")
    if missing:
        parser.add_argument("--missing", default="raise", choices=MISSING_FILES,
                            help="image files missing on disk: raise (default) or drop them with a warning")


def _config_flag(parser: argparse.ArgumentParser, spec: Field) -> None:
    """One TrainConfig field as a flag: its type, default, help and choices."""
    meta = spec.metadata
    default = spec.default if spec.default is not MISSING else spec.default_factory()
    kind = str(spec.type).split("|")[0].strip()
    help_text = meta["help"] + (f" (default {default})" if default not in (None, False, {}, "") else "")
    unset = argparse.SUPPRESS  # a flag not given stays absent, so a recipe's value is not overwritten
    if meta.get("flag") == "positional":
        parser.add_argument(spec.name, nargs="?", default=unset, help=help_text)
        parser.add_argument(f"--{spec.name}", dest=f"{spec.name}_option", metavar=spec.name.upper(),
                            help=f"same as the positional {spec.name.upper()}")
        return
    flag = meta.get("flag") or f"--{spec.name.replace('_', '-')}"
    if kind == "bool":  # --name / --no-name, so a recipe's choice can be switched either way
        parser.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, default=unset,
                            help=help_text)
    elif kind == "dict":
        parser.add_argument(flag, dest=spec.name, action="append", default=unset, metavar=meta.get("metavar"),
                            help=help_text)
    elif meta.get("many"):
        names = list(meta["choices"])
        parser.add_argument(flag, dest=spec.name, type=_names_from(names), default=unset,
                            metavar=meta.get("metavar") or "{" + ",".join(names) + "}[,...]", help=help_text)
    else:
        choices = list(meta["choices"]) if meta.get("choices") is not None else None
        parser.add_argument(flag, dest=spec.name, type={"int": int, "float": float}.get(kind, str), default=unset,
                            choices=choices, metavar=meta.get("metavar"), help=help_text)


def _profile_parser(commands) -> None:
    from mlic_pipe.mix import MIXERS

    profile = commands.add_parser("profile", help="time the data pipeline end to end (the main job)")
    _add_data_options(profile)
    profile.add_argument("--batch-size", type=_at_least(1), default=32, help="images read per step, B (default 32)")
    profile.add_argument("--image-size", type=_at_least(16), default=448, help="image size S (default 448)")
    profile.add_argument("--mix", default="splicemix", choices=list(MIXERS),
                         help="augmentation (default splicemix, the paper's default mode)")
    profile.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    profile.add_argument("--dtype", default="float32", choices=list(_dtypes()), help="output image dtype "
                         "(default float32)")
    profile.add_argument("--steps", type=_at_least(1), default=20, help="steps timed (default 20)")
    profile.add_argument("--auto-augment", metavar="POLICY", help="add auto-augment (rand-m9-n2-mstd0.5, trivial, "
                         "auto, mldecoder, randaugment-pypi) and time it apart")
    profile.add_argument("--warmup", type=_at_least(0), default=2, help="untimed steps first (default 2)")
    profile.add_argument("--model", help="also time a timm model's forward + backward, e.g. resnet50 (random init)")
    profile.add_argument("--threads", type=_at_least(1), help="DALI CPU threads (default: CPU count, at most 8)")
    profile.add_argument("--render-threads", type=_at_least(1), metavar="N",
                         help="CPU render (and plan) threads (default: torch's thread count)")
    profile.add_argument("--on-error", default="raise", choices=ON_ERROR,
                         help="undecodable images: raise (default), or skip and report")
    profile.add_argument("--json", help="also write the numbers to this JSON file")
    profile.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    profile.set_defaults(run=_cmd_profile)


def _train_parser(commands) -> None:
    from mlic_pipe.training import TrainConfig
    from mlic_pipe.training.recipes import RECIPES

    train = commands.add_parser("train", help="train a multi-label classifier on the loader (reference trainer)",
                                description="Train any timm backbone + head + loss + mix with MLICLoader; "
                                            "evaluates every epoch, logs JSON lines, checkpoints, resumes; "
                                            "run under torchrun for DDP.")
    options = train.add_argument_group("run options (TrainConfig fields; a flag given overrides the recipe)")
    for spec in fields(TrainConfig):
        _config_flag(options, spec)
    train.add_argument("--recipe", choices=list(RECIPES), help="start from a paper's published settings "
                       "(see --list-recipes); flags given override them")
    train.add_argument("--list-recipes", action="store_true", help="print the recipes, their settings and sources")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_cmd_train)


def _study_parser(commands) -> None:
    from mlic_pipe.study import STUDY_CONFIGS
    from mlic_pipe.training import TrainConfig

    study = commands.add_parser("study", help="does an augmentation help? train configs x seeds, tabulate and plot",
                                description="Runs `train` for every config and seed (finished runs are kept, an "
                                            "interrupted one resumes), then writes study.md (mean ± std of mAP, "
                                            "CF1, OF1 and their top-3 forms; mAP vs none paired by seed), "
                                            "study.json and study.png (val mAP per epoch) in --out-dir.")
    study.add_argument("--configs", default="none,splicemix,splicemix-cl,cutmix,fmix",
                       help=f"comma-separated, from {', '.join(STUDY_CONFIGS)} (default: the first five)")
    study.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run each (default 0,1,2)")
    options = study.add_argument_group("the runs' settings (TrainConfig fields; --out-dir is the study's folder, "
                                       "default runs/study; the grid sets --mix, --seed, --splicemix-cl)")
    for spec in fields(TrainConfig):
        if spec.name not in ("seed", "mix", "splicemix_cl", "resume"):
            _config_flag(options, spec)
    study.add_argument("--recipe", help=argparse.SUPPRESS)
    study.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    study.set_defaults(run=_cmd_study, recipe=None)


def _other_parsers(commands) -> None:
    from mlic_pipe.loading.crops import CROPS
    from mlic_pipe.mix.erasing import ERASE_MODES
    from mlic_pipe.mix import MIXERS

    check = commands.add_parser("check", help="inspect a dataset: labels, class frequencies, unusable or odd files")
    _add_data_options(check, missing=False)
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=_cmd_check)

    preview = commands.add_parser("preview", help="render one mixed batch as a captioned PNG grid")
    _add_data_options(preview)
    preview.add_argument("--mix", default="splicemix", choices=list(MIXERS),
                         help="augmentation (default splicemix, the paper's default mode)")
    preview.add_argument("--out", default="batch.png", help="PNG to write (default batch.png)")
    preview.add_argument("--batch-size", type=_at_least(1), default=16, help="regular images in the batch (default 16)")
    preview.add_argument("--size", type=_at_least(16), default=224, help="image size S (default 224)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the images picked and of the plan")
    preview.add_argument("--crop", default="random", choices=list(CROPS), help="crop mode (default random)")
    preview.add_argument("--auto-augment", metavar="POLICY", help="e.g. rand-m9-n2-mstd0.5, trivial, auto, mldecoder")
    preview.add_argument("--cutout", type=float, default=0.0, metavar="FACTOR", help="ML-Decoder's Cutout (e.g. 0.5)")
    preview.add_argument("--reprob", type=float, default=0.0, help="timm's random erasing probability")
    preview.add_argument("--remode", default="pixel", choices=list(ERASE_MODES), help="random erasing fill")
    preview.add_argument("--no-normalize", action="store_true", help="show [0, 1] images as a run without "
                         "normalization gets them (the tiles look the same)")
    preview.set_defaults(run=_cmd_preview)

    shard = commands.add_parser("shard", help="write a dataset as WebDataset tars (+ DALI index files, dataset.json)",
                                description="Original image bytes + packed multi-hot labels per sample, in GNU "
                                            "tars any rank (or object store) can stream; read back by every "
                                            "command as DATA=OUT_DIR.")
    shard.add_argument("data", help=DATA_HELP)
    shard.add_argument("out_dir", metavar="OUT_DIR", help="directory for shard-NNNNNN.tar/.idx and dataset.json")
    size = shard.add_mutually_exclusive_group()
    size.add_argument("--samples-per-shard", type=_at_least(1), help="samples per tar")
    size.add_argument("--shard-bytes", help="close a tar once it reaches this size, e.g. 256M or 1G (default 256M)")
    shard.add_argument("--split", help="split to read (train, val, ...; reader-dependent)")
    shard.add_argument("--images", metavar="DIR", help="image folder of a COCO-format .json outside COCO's layout "
                       "(or of a NUS-WIDE root, a list file, a CSV)")
    shard.add_argument("--classes", metavar="FILE", help="class names, one a line (a .txt list file's columns)")
    shard.add_argument("--missing", default="raise", choices=MISSING_FILES,
                       help="image files missing on disk: raise (default) or drop them with a warning")
    shard.add_argument("--verify", action="store_true", help="read every shard back and compare bytes and labels")
    shard.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    shard.set_defaults(run=_cmd_shard)

    demo = commands.add_parser("demo-data", help="build the built-in demo dataset (COCO format)")
    demo.add_argument("dir", nargs="?", help="where to write it (default: the user cache, reused by every command)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the composition (default 0)")
    demo.set_defaults(run=_cmd_demo_data)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlic-pipe", description="GPU data pipeline for multi-label image "
                                     "classification: DALI decode + one fused Triton SpliceMix kernel.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _profile_parser(commands)
    _train_parser(commands)
    _study_parser(commands)
    _other_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `mlic-pipe` command. Run from a shell (`argv` None), it also keeps the image decoders' raw lines out of
    stderr (`mlic_pipe.native_stderr`); called with an argument list (tests, scripts) it leaves descriptor 2 alone."""
    args = build_parser().parse_args(argv)
    if argv is None:
        from mlic_pipe.native_stderr import filter_native_stderr

        filter_native_stderr()
    _configure_logging(getattr(args, "quiet", False))
    try:
        return args.run(args)
    except (MLICDataError, ConfigError) as error:
        print(f"mlic-pipe {args.command}: error: {error.for_cli(FLAGS)}", file=sys.stderr)
        return 2
    except LoaderStateError as error:  # a checkpoint's loader states that do not fit (train --resume)
        print(f"mlic-pipe {args.command}: error: --resume: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
