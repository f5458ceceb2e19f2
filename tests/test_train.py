"""The reference trainer on the demo data: it learns, resumes exactly, runs every option and DDP."""
import dataclasses
import json
import math
import os
import socket

import numpy as np
import pytest
import torch

from mlic_pipe.errors import ConfigError
from mlic_pipe.training import checkpoint as checkpoint_module
from mlic_pipe.cli import main
from mlic_pipe.training import TrainConfig, train
from mlic_pipe.mix import MIXERS
from mlic_pipe.training.optim import build_scheduler

SMALL = dict(backbone="resnet18", image_size=64, batch_size=16, threads=2, limit_train_batches=2, warmup_epochs=0)


def small(tmp_path, **overrides) -> TrainConfig:
    options = {**SMALL, "out_dir": str(tmp_path / "run"), **overrides}
    return TrainConfig(**options)


@pytest.mark.slow  # ~8 s; CI runs it
def test_a_short_splicemix_run_lowers_the_training_loss(tmp_path):
    config = small(tmp_path, epochs=4, limit_train_batches=4, loss="bce", lr=1e-3, val_split=None)
    result = train(config, progress=False)
    losses = [record["train_loss"] for record in result.history]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.9 * losses[0], losses  # seeded: measured 0.680 -> 0.583


def test_resume_continues_exactly_where_an_interrupted_run_stopped(tmp_path, monkeypatch):
    reference = train(small(tmp_path / "a", epochs=2, val_split=None), progress=False)
    reference_weights = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=False)["model"]

    class Interrupted(Exception):
        pass

    original = checkpoint_module.save_checkpoint

    def checkpoint_then_die(path, state):
        original(path, state)
        raise Interrupted  # the job is killed right after epoch 1 was saved
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", checkpoint_then_die)
    with pytest.raises(Interrupted):
        train(small(tmp_path / "b", epochs=2, val_split=None), progress=False)
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", original)
    resumed = train(small(tmp_path / "b", epochs=2, val_split=None, resume="auto"), progress=False)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in reference.history], rel=1e-5)
    weights = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)["model"]
    for name, value in reference_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("options", [
    dict(head="csra", head_kwargs={"num_heads": 2}, loss="asl", optimizer="sgd", schedule="step", step_size=1),
    dict(head="mldecoder", head_kwargs={"embed_dim": 64, "num_heads": 4, "dim_feedforward": 64}, loss="aam",
         schedule="onecycle", ema=0.9),
    dict(head="graph", head_kwargs={"hidden_dim": 32, "embed_dim": 16}, loss="bce", mix="cutmix", mix_append=True,
         sumix=True),
    dict(head="avg", loss="asl", mix="fmix", amp="bf16"),
    dict(head="avg", loss="asl", mix="saliencymix", mix_append=True, sumix=True),
    dict(backbone="resnet18", image_size=128, head="avg", splicemix_cl=True),
])
def test_every_option_trains_and_evaluates(tmp_path, options):
    config = small(tmp_path, epochs=1, limit_train_batches=1, **options)
    result = train(config, progress=False)
    record = result.history[0]
    assert math.isfinite(record["train_loss"]) and 0 <= record["mAP"] <= 1
    if config.ema:
        assert 0 <= record["mAP_ema"] <= 1
    assert (tmp_path / "run" / "best.pt").is_file()


@pytest.mark.parametrize("mix", [name for name in MIXERS if name not in ("splicemix", "none")])  # not MASK_MIXES:
@pytest.mark.parametrize("append", [False, True])                                    # it checks that list
def test_mix_append_reaches_every_mask_mix(tmp_path, mix, append):
    """`--mix-append` keeps the B sources and adds B/4 mixed images; without it all B are mixed in place."""
    from mlic_pipe.datasets import load
    from mlic_pipe.training.trainer import _loaders

    config = small(tmp_path, mix=mix, mix_append=append, batch_size=8, image_size=32)
    loader, _ = _loaders(config, load("demo"), None, "cpu")
    batch = next(iter(loader))
    images, _ = batch
    assert images.shape[0] == (10 if append else 8)
    assert batch.plan.num_mixed == (2 if append else 8)


@pytest.mark.parametrize("rule", ["union", "area"])
def test_label_rule_reaches_the_training_batches(tmp_path, rule):
    """`--label-rule`: each in-place CutMix row's label, recomputed here from the dataset's own table."""
    from mlic_pipe.datasets import load
    from mlic_pipe.training.trainer import _loaders

    index = load("demo")
    config = small(tmp_path, mix="cutmix", label_rule=rule, batch_size=8, image_size=32)
    loader, _ = _loaders(config, index, None, "cpu")
    batch = next(iter(loader))
    truth = torch.as_tensor(np.asarray(index.targets), dtype=torch.float32)[batch.rows]
    plan = batch.plan
    expected = []
    for output in range(plan.num_outputs):
        own, other, lam = truth[int(plan.cells[output, 0])], truth[int(plan.partner[output])], float(plan.lam[output])
        expected.append(torch.maximum(own, other) if rule == "union" else lam * own + (1 - lam) * other)
    assert plan.num_mixed == 8 and 0 < float(plan.lam.min()) < 1
    torch.testing.assert_close(batch.targets, torch.stack(expected))
    soft = ((batch.targets > 0) & (batch.targets < 1)).any()
    assert bool(soft) == (rule == "area")


def test_cutout_and_random_erasing_flags_reach_the_training_batches(tmp_path):
    """`--cutout 0.5 --reprob 1 --remode pixel --recount 2`: every training image gets its Cutout box (side
    int(0.5 * 32 + 0.5) = 16 but clipped at the border) and one or two noise boxes; validation gets none."""
    from mlic_pipe.datasets import load
    from mlic_pipe.mix.plan import ERASE_COLOUR, ERASE_NOISE
    from mlic_pipe.training.trainer import _loaders

    index = load("demo")
    config = small(tmp_path, mix="none", cutout=0.5, reprob=1.0, remode="pixel", recount=2, batch_size=8,
                   image_size=32)
    loader, val_loader = _loaders(config, index, index, "cpu")
    loader.return_plan = val_loader.return_plan = True
    erase = next(iter(loader)).plan.erase
    assert erase.shape == (8, 3, 9) and (erase[:, 0, 4] == ERASE_COLOUR).all()
    sides = erase[:, 0, 2:4] - erase[:, 0, :2]
    assert ((sides >= 8) & (sides <= 17)).all()  # 16 (+ PIL's far corner), at least half of it at a border
    assert ((erase[:, 1:, 4] == ERASE_NOISE).sum(1) >= 1).all()
    assert next(iter(val_loader)).plan.erase is None
    with pytest.raises(ConfigError, match="cutout"):
        small(tmp_path, cutout=1.5).validate()


def test_crop_flip_and_normalize_flags_reach_both_loaders(tmp_path):
    """`--crop multiscale --crop-scale --eval-crop center --crop-pct --hflip 0 --no-normalize` as loader settings;
    unnormalized images are the [0, 1] images the normalized ones come from."""
    from mlic_pipe.datasets import load
    from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD
    from mlic_pipe.training.trainer import _loaders

    index = load("demo")
    config = small(tmp_path, mix="none", crop="multiscale", eval_crop="center", crop_pct=0.9, hflip=0.0,
                   normalize=False, batch_size=8, image_size=32)
    loader, val_loader = _loaders(config, index, index, "cpu")
    assert loader.settings.cropping.mode == "multiscale" and loader.settings.flip_prob == 0
    assert val_loader.settings.cropping.mode == "center" and val_loader.settings.cropping.crop_pct == 0.9
    plain = next(iter(loader)).images.clone()
    normalized = next(iter(_loaders(small(tmp_path, mix="none", crop="multiscale", hflip=0.0, batch_size=8,
                                          image_size=32), index, None, "cpu")[0])).images
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(plain, normalized * std + mean, atol=1e-5, rtol=0)
    random_loader, _ = _loaders(small(tmp_path, crop_scale="0.2,0.4"), index, None, "cpu")
    assert random_loader.settings.cropping.scale == (0.2, 0.4)
    threaded, threaded_val = _loaders(small(tmp_path, render_threads=3), index, index, "cpu")  # --render-threads
    assert threaded.render_threads == threaded_val.render_threads == 3
    for bad in ("0.5", "0,1", "0.9,0.5"):
        with pytest.raises(ConfigError, match="crop_scale"):
            small(tmp_path, crop_scale=bad).validate()


def test_cli_train_reports_map_and_writes_a_json_log(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--backbone", "resnet18", "--epochs", "1", "--image-size", "64", "--batch-size", "16",
                 "--limit-train-batches", "2", "--head", "csra", "--head-arg", "num_heads=4", "--head-arg", "lam=0.2",
                 "--threads", "2", "--out-dir", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "mAP" in printed and "best mAP" in printed and "CF1" in printed
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert lines[0]["config"]["head_kwargs"] == {"num_heads": 4, "lam": 0.2}
    assert lines[1]["epoch"] == 1 and 0 <= lines[1]["mAP"] <= 1 and "OF1_top3" in lines[1]


def test_bad_combinations_are_refused_before_any_work(tmp_path):
    # library errors name the config fields ...
    with pytest.raises(ConfigError, match="^sumix needs a mask mix"):
        train(small(tmp_path, sumix=True), progress=False)
    with pytest.raises(ConfigError, match="^splicemix_cl needs mix='splicemix'"):
        train(small(tmp_path, mix="cutmix", splicemix_cl=True), progress=False)
    with pytest.raises(ConfigError, match="^loss='aam' needs cosine logits"):
        train(small(tmp_path, head="csra", loss="aam"), progress=False)
    with pytest.raises(ConfigError, match="^resume .*missing.pt: no such checkpoint"):
        train(small(tmp_path, resume=str(tmp_path / "missing.pt"), val_split=None), progress=False)
    with pytest.raises(ConfigError, match="^head must be one of avg, max, csra"):
        train(small(tmp_path, head="gap"), progress=False)


def test_the_cli_spells_config_errors_as_its_flags(tmp_path, capsys):
    # ... and the command line says the same in its flags
    assert main(["train", "--mix", "cutmix", "--splicemix-cl", "--out-dir", str(tmp_path), "-q"]) == 2
    assert "mlic-pipe train: error: --splicemix-cl needs --mix splicemix" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nope.pt"), "--out-dir", str(tmp_path), "-q"]) == 2
    assert "--resume " in capsys.readouterr().err


def test_every_config_field_is_a_train_flag_with_its_help_and_registry_choices():
    from dataclasses import fields

    from mlic_pipe.cli import build_parser
    from mlic_pipe.models import HEADS

    parser = build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    by_dest = {action.dest: action for action in train_parser._actions}
    for spec in fields(TrainConfig):
        assert spec.name in by_dest, spec.name
        assert spec.metadata["help"].split(" (")[0] in by_dest[spec.name].help
    assert list(by_dest["head"].choices) == list(HEADS.names)
    args = parser.parse_args(["train", "--head", "csra", "--lr", "0.01", "--pretrained", "--val-split", ""])
    assert (args.head, args.lr, args.pretrained, args.val_split) == ("csra", 0.01, True, "")


def test_warmup_cosine_and_step_schedules_follow_their_formulas():
    def lrs(schedule, **kw):
        config = TrainConfig(epochs=4, schedule=schedule, warmup_epochs=1, **kw)
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = build_scheduler(config, optimizer, steps_per_epoch=5)
        out = []
        for _ in range(20):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out
    cosine = lrs("cosine")
    assert cosine[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # linear warmup over 5 steps
    for step in range(5, 20):
        assert cosine[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 5) / 15)))
    step_lrs = lrs("step", step_size=2, step_gamma=0.5)
    assert step_lrs[5:10] == pytest.approx([1.0] * 5) and step_lrs[10:20] == pytest.approx([0.5] * 10)
    # CSRA's WarmUpLR (utils/warmUpLR.py): base_lr * last_epoch / total_iters, stepped each iteration from 0
    from_zero = lrs("step", step_size=2, step_gamma=0.5, warmup_from_zero=True)
    assert from_zero[:5] == pytest.approx([t / 5 for t in range(5)]) and from_zero[5:10] == pytest.approx([1.0] * 5)
    assert from_zero[10:20] == pytest.approx([0.5] * 10)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "sam"])
def test_weight_decay_leaves_biases_and_norms_out_as_timms_parameter_groups_do(optimizer):
    from timm.optim import param_groups_weight_decay

    from mlic_pipe.models import build_model
    from mlic_pipe.training.optim import build_optimizer

    model = build_model("resnet18", "csra", 5, num_heads=2)
    built = build_optimizer(TrainConfig(optimizer=optimizer, weight_decay=3e-4, filter_bias_and_bn=True, lr=0.1,
                                        backbone_lr_mult=0.1), model)
    groups = built.base.param_groups if optimizer == "sam" else built.param_groups
    exempt = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    decayed = {id(p) for g in groups if g["weight_decay"] == 3e-4 for p in g["params"]}
    timm_groups = param_groups_weight_decay(model, weight_decay=3e-4)
    assert exempt == {id(p) for g in timm_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {id(p) for g in timm_groups if g["weight_decay"] == 3e-4 for p in g["params"]}
    assert exempt and decayed and len(exempt) + len(decayed) == len(list(model.parameters()))
    head = {id(p) for p in model.head.parameters()}
    assert all(g["lr"] == pytest.approx(0.1 if id(g["params"][0]) in head else 0.01) for g in groups if g["params"])
    plain = build_optimizer(TrainConfig(optimizer=optimizer, weight_decay=3e-4), model)
    assert all(g["weight_decay"] == 3e-4 for g in (plain.base if optimizer == "sam" else plain).param_groups)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        # SAM under DDP: both backward passes all-reduce
        config = TrainConfig(**{**SMALL, "threads": 1}, epochs=1, out_dir=out_dir, device="cpu", optimizer="sam")
        result = train(config, progress=False)
        weights = torch.load(os.path.join(out_dir, "last.pt"), weights_only=False)["model"] if rank == 0 else None
        model_sum = sum(float(v.double().sum()) for v in weights.values()) if weights else None
        torch.save({"history": result.history, "weights_sum": model_sum}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~8-12 s: two processes (the default run stays under 6 minutes; CI runs it)
def test_torchrun_style_ddp_over_gloo_trains_and_gathers_the_whole_validation_set(tmp_path):
    out_dir = str(tmp_path / "ddp")
    os.makedirs(out_dir)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), out_dir, None), nprocs=2, join=True)
    ranks = [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False) for r in range(2)]
    # evaluation gathers both shards: each rank reports the metrics of all 100 validation images
    assert ranks[0]["history"][0]["num_images"] == ranks[1]["history"][0]["num_images"] == 100
    assert ranks[0]["history"][0]["mAP"] == ranks[1]["history"][0]["mAP"]
    assert math.isfinite(ranks[0]["weights_sum"])


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_evaluate_equals_sklearn_on_the_same_predictions_with_ignore(tmp_path, tta):
    """The trainer's evaluation (loader order, rank gathering, ignore rows, flip TTA) against a direct computation."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    from mlic_pipe.datasets import load
    from mlic_pipe.loader import MLICLoader
    from mlic_pipe.models import build_model
    from mlic_pipe.training import Objective, evaluate

    index = load("demo", split="val")
    index.ignore = np.random.default_rng(0).random(index.targets.shape) < 0.1
    torch.manual_seed(0)
    model = build_model("resnet18", "avg", index.num_classes).eval()
    config = TrainConfig(loss="bce")
    loader = MLICLoader(index, 16, image_size=64, train=False, return_plan=True, num_threads=2)
    report = evaluate(model, loader, index, Objective(config), torch.autocast("cpu", enabled=False), progress=False,
                      tta=tta)
    scores = np.zeros(index.targets.shape)
    with torch.no_grad():
        for images, _, plan in loader:
            mirrored = torch.from_numpy(images.numpy()[..., ::-1].copy())
            own = torch.sigmoid(model(images)).numpy()
            scores[plan.indices.numpy()] = own if tta == "none" else (own + torch.sigmoid(model(mirrored)).numpy()) / 2
    expected = []
    for c in range(index.num_classes):
        keep = ~index.ignore[:, c]
        if index.targets[keep, c].any():
            expected.append(average_precision_score(index.targets[keep, c], scores[keep, c]))
    assert report.num_images == len(index)
    assert report.mAP == pytest.approx(np.mean(expected), rel=1e-5)


@pytest.mark.slow  # ~8 s; CI runs it
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_run_killed_mid_epoch_resumes_there_with_the_same_losses_and_weights(tmp_path, monkeypatch, device):
    """On a GPU too: the checkpoint is read onto the CPU and the GPU generators are restored (cuDNN's
    reductions are not bitwise repeatable there, hence the looser tolerance)."""
    options = dict(epochs=2, limit_train_batches=4, val_split=None, checkpoint_every=2, mix="splicemix",
                   device=device, amp="off")
    tolerance = dict(rel=1e-5) if device == "cpu" else dict(rel=1e-3)
    reference = train(small(tmp_path / "a", **options), progress=False)
    reference_weights = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=False)["model"]

    class Killed(Exception):
        pass

    original = checkpoint_module.save_checkpoint
    saves = []

    def save_then_die(path, state):
        original(path, state)
        saves.append(state.get("epoch_progress"))
        if len(saves) == 3:  # epoch 1's mid-epoch save (after step 2): the job dies there
            raise Killed
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(small(tmp_path / "b", **options), progress=False)
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", original)
    assert saves[-1]["steps"] == 2 and saves[1] is None  # mid-epoch 0, end of epoch 0, mid-epoch 1
    state = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)
    assert state["loader"][0]["epoch"] == 1 and state["loader"][0]["batches"] == 2

    resumed = train(small(tmp_path / "b", resume="auto", **options), progress=False)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in reference.history], **tolerance)
    weights = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)["model"]
    for name, value in reference_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4 if device == "cpu" else 1e-2,
                                   atol=1e-6 if device == "cpu" else 1e-4, msg=name)


def test_sam_two_step_update_equals_a_hand_computation_on_a_tiny_model():
    from mlic_pipe.training.sam import SAM

    torch.manual_seed(0)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    weight = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    start = weight.detach().clone()

    def loss_at(w):
        return ((x @ w.T - y) ** 2).mean()

    # by hand: g1 at w, e = rho g1 / |g1|, g2 at w + e, w' = w - lr g2
    w0 = start.clone().requires_grad_()
    (g1,) = torch.autograd.grad(loss_at(w0), w0)
    shifted = (start + 0.1 * g1 / g1.norm()).requires_grad_()
    (g2,) = torch.autograd.grad(loss_at(shifted), shifted)
    expected = start - 0.5 * g2

    sam = SAM(torch.optim.SGD([weight], lr=0.5), rho=0.1)
    loss_at(weight).backward()
    sam.perturb()
    sam.zero_grad()
    loss_at(weight).backward()
    sam.step()
    torch.testing.assert_close(weight.detach(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("amp, device", [("off", "cpu"), ("bf16", "cpu"),
                                         pytest.param("fp16", "cuda", marks=pytest.mark.gpu),
                                         pytest.param("bf16", "cuda", marks=pytest.mark.gpu)])
def test_sam_trains_through_the_trainer_and_early_stopping_stops(tmp_path, amp, device):
    config = small(tmp_path, epochs=4, optimizer="sam", sam_base="sgd", sam_rho=0.05, amp=amp, early_stop=1,
                   lr=0.0, device=device)  # lr 0: validation mAP cannot improve after epoch 1, so the run stops after epoch 2
    result = train(config, progress=False)
    assert len(result.history) == 2 and result.best_epoch == 1
    assert all(math.isfinite(r["train_loss"]) for r in result.history)


@pytest.mark.parametrize("recipe", ["splicemix-coco", "splicemix-cl-coco", "csra-coco", "mldecoder-asl-coco",
                                    "mldecoder-aam-coco"])
def test_every_recipe_loads_and_trains_two_steps_on_the_demo_data(tmp_path, recipe, monkeypatch):
    from mlic_pipe.training import trainer as trainer_module
    from mlic_pipe.training.recipes import recipe_settings

    seen = {}
    real_train = trainer_module.train

    def spy(config, progress=True):
        seen["config"] = config
        return real_train(config, progress=progress)
    monkeypatch.setattr("mlic_pipe.training.train", spy)
    # the published settings, made small enough for this machine by flags, which override the recipe
    small_head = ["--head-arg", "embed_dim=32"] if recipe.startswith("mldecoder") else []
    size = "96" if recipe == "splicemix-cl-coco" else "64"  # CL's 3-cell grid sides need resnet18's 3x3 map at 96
    code = main(["train", "--recipe", recipe, "--backbone", "resnet18", "--no-pretrained", "--image-size", size,
                 "--batch-size", "8", "--epochs", "1", "--limit-train-batches", "2", "--amp", "off", "--threads", "2",
                 *small_head, "--out-dir", str(tmp_path), "-q"])
    assert code == 0
    config, published = seen["config"], recipe_settings(recipe)
    overridden = {"backbone", "pretrained", "image_size", "batch_size", "epochs", "amp", "head_kwargs"}
    for key, value in published.items():
        if key not in overridden:
            assert getattr(config, key) == value, key
    assert config.pretrained is False and config.image_size == int(size)  # the flags given won over the recipe
    want_head = {**published.get("head_kwargs", {}), **({"embed_dim": 32} if small_head else {})}
    assert config.head_kwargs == want_head
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[1])
    assert math.isfinite(record["train_loss"]) and 0 <= record["mAP"] <= 1


def test_list_recipes_prints_each_with_its_source(capsys):
    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("splicemix-coco", "splicemix-cl-coco", "csra-coco", "mldecoder-asl-coco", "mldecoder-aam-coco"):
        assert f"{name}:" in out
    assert "zuiran/SpliceMix" in out and "Kevinz-code/CSRA" in out and "ML_Decoder" in out
    gaps = [line for line in out.splitlines() if line.strip().startswith("not reproduced:")]
    for word in ("augment", "cutout", "crop", "weight decay", "warm"):  # issue 27: all of these are reproduced
        assert not any(word in line.lower() for line in gaps), (word, gaps)


def test_resume_reads_the_checkpoint_on_the_cpu_whatever_the_training_device(tmp_path):
    """A GPU run's resume mapped the checkpoint to the GPU, and `torch.set_rng_state` refused the CUDA tensor.

    The training device is stood in for by "meta" (tensors with no data, like a GPU's from the CPU's side):
    mapping the checkpoint there breaks the resume exactly as a GPU did.
    """
    from types import SimpleNamespace

    from mlic_pipe.training import trainer as trainer_module

    config = small(tmp_path, epochs=1, val_split=None)
    train(config, progress=False)
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    torch.manual_seed(1234)  # the resume must put back the saved generator, not keep this one
    train_index = trainer_module._load_data(config)[0]
    model = trainer_module._model(config, train_index, torch.device("cpu"))
    parts = trainer_module._parts(config, model, 2, distributed=False)
    result = trainer_module.TrainResult(history=[], out_dir=tmp_path / "run")
    on_gpu = SimpleNamespace(device=torch.device("meta"), load_state_dict=lambda state: None, index=train_index)
    resumed = trainer_module._resume(dataclasses.replace(config, resume="auto"), parts, result, on_gpu)
    assert resumed == (None, None) and result.start_epoch == 1
    assert torch.equal(torch.get_rng_state(), saved["rng"]["cpu"])
    for name, value in saved["model"].items():
        assert torch.equal(model.state_dict()[name], value), name


def test_rng_state_saves_and_restores_every_gpu_generator(monkeypatch):
    from mlic_pipe.training.checkpoint import restore_rng_state, rng_state

    gpu_states = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    state = rng_state()
    cpu = torch.get_rng_state()
    torch.rand(3)  # move the CPU generator on
    restore_rng_state(state)
    assert torch.equal(torch.get_rng_state(), cpu)
    assert [s.tolist() for s in restored] == [[1, 2], [3, 4]]
    restore_rng_state(cpu.clone())  # a checkpoint of an older version holds the bare CPU state
    assert torch.equal(torch.get_rng_state(), cpu)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the skipped step
def test_sam_under_fp16_returns_to_the_weights_when_the_scaler_skips_the_step():
    """An overflowing second gradient makes GradScaler skip SAM.step: the perturbation must be undone anyway."""
    import contextlib
    from types import SimpleNamespace

    from mlic_pipe.mix import MixPlan
    from mlic_pipe.training.loop import RunParts, _step
    from mlic_pipe.training.sam import SAM

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    start = {name: value.detach().clone() for name, value in model.state_dict().items()}
    calls = []

    class Objective:
        sumix = None

        def wants_cells(self, plan):
            return False

        def __call__(self, logits, targets, plan, ignore=None):
            calls.append(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
            return loss if len(calls) % 2 else loss * float("inf")  # the perturbed pass overflows

    optimizer = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    parts = RunParts(model=model, wrapped=model, optimizer=optimizer,
                     scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0), objective=Objective(),
                     autocast=contextlib.nullcontext(), scaler=scaler, ema=None, steps_per_epoch=1)
    batch = SimpleNamespace(images=torch.randn(6, 4), targets=(torch.rand(6, 3) > 0.5).float(),
                            plan=MixPlan.identity(6), ignore=None)
    _step(parts, batch, 0)
    assert scaler.get_scale() == 2.0**15  # the step was skipped (the scale backs off)
    for name, value in model.state_dict().items():
        assert torch.equal(value, start[name]), name  # back at w, not at w + rho g / |g|


def test_a_kill_between_the_log_line_and_last_pt_records_each_epoch_once(tmp_path, monkeypatch):
    class Killed(Exception):
        pass

    original = checkpoint_module.save_checkpoint

    def die_before_saving(path, state):
        if state["epoch"] == 1 and state.get("epoch_progress") is None:
            raise Killed  # epoch 2's line is in log.jsonl, last.pt still says epoch 1
        original(path, state)
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", die_before_saving)
    with pytest.raises(Killed):
        train(small(tmp_path, epochs=3, val_split=None), progress=False)
    log_path = tmp_path / "run" / "log.jsonl"
    assert [json.loads(line).get("epoch") for line in log_path.read_text().splitlines()] == [None, 1, 2]
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", original)
    with log_path.open("a") as handle:
        handle.write('{"epoch": 3, "train_lo')  # and a half-written line, as a kill mid-write leaves
    train(small(tmp_path, epochs=3, val_split=None, resume="auto"), progress=False)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert "config" in lines[0] and lines[0]["config"]["resume"] is None  # the header the run began with
    assert [line["epoch"] for line in lines[1:]] == [1, 2, 3]


def _world_worker(rank, world, port, out_dir, phase, schedule):
    """Train 2 epochs on `world` gloo processes; phase "die": every rank stops at epoch 2's first mid-epoch save."""
    from mlic_pipe.training import trainer as trainer_module

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    original, saves = trainer_module._save_mid_epoch, []

    def save_then_die(*args, **kwargs):
        original(*args, **kwargs)
        saves.append(args[4])
        if phase == "die" and args[4] == 1:
            raise KeyboardInterrupt  # on every rank at once: no rank is left waiting in a collective
    trainer_module._save_mid_epoch = save_then_die
    config = TrainConfig(**{**SMALL, "threads": 1, "limit_train_batches": None, "batch_size": 32, "warmup_epochs": 1},
                         epochs=2,
                         out_dir=out_dir, device="cpu", val_split=None, schedule=schedule, checkpoint_every=2,
                         lr=1e-3, resume="auto" if phase == "resume" else None)
    try:
        train(config, progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_a_run_saved_on_two_processes_resumes_on_one_and_ends_its_schedule_where_configured(tmp_path, schedule):
    """Demo: 400 images, batch 32: 6 steps per epoch on 2 ranks, 12 on 1. Killed 2 steps into epoch 2 on 2
    ranks, resumed on 1: the rest of epoch 2 is 8 steps, and the schedule still ends at its last step."""
    out_dir = str(tmp_path / "run")
    torch.multiprocessing.spawn(_world_worker, args=(2, _free_port(), out_dir, "die", schedule), nprocs=2, join=True)
    saved = torch.load(os.path.join(out_dir, "last.pt"), weights_only=False)
    assert saved["epoch"] == 1 and saved["steps_per_epoch"] == 6 and saved["epoch_progress"]["steps"] == 2
    _world_worker(0, 1, None, out_dir, "resume", schedule)
    final = torch.load(os.path.join(out_dir, "last.pt"), weights_only=False)
    assert final["epoch"] == 1 and final.get("epoch_progress") is None and final["steps_per_epoch"] == 12
    lr = final["optimizer"]["param_groups"][-1]["lr"]
    if schedule == "onecycle":  # where torch's OneCycleLR is after the 24 steps of the same run uninterrupted
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        uninterrupted = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=24, pct_start=0.5)
        for _ in range(24):
            optimizer.step()
            uninterrupted.step()
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        assert final["scheduler"]["last_epoch"] == 2 * 12  # every step of the configured run, none past it
    else:  # a warm-up epoch, then cosine annealing from 1e-3 reaches 0 at the run's last step
        assert lr == pytest.approx(0.0, abs=1e-12)
    lines = [json.loads(line) for line in open(os.path.join(out_dir, "log.jsonl"))]
    assert [line.get("epoch") for line in lines] == [None, 1, 2]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step"])
def test_scheduler_at_equals_the_schedule_stepped_from_the_start(schedule):
    """Rebuilt mid-run (after 7 steps counted in another world size's epochs), it gives the learning rate and
    momentum that the same schedule stepped from its first step gives at that position."""
    from mlic_pipe.training.optim import scheduler_at

    config = TrainConfig(epochs=3, schedule=schedule, warmup_epochs=1, lr=1e-3, step_size=1)

    def fresh_optimizer():
        return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4},
                                {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3}], lr=1e-3, momentum=0.9)

    reference_optimizer = fresh_optimizer()
    reference = build_scheduler(config, reference_optimizer, 10)
    for _ in range(17):
        reference_optimizer.step()
        reference.step()
    optimizer = fresh_optimizer()
    old = build_scheduler(config, optimizer, 5)
    for _ in range(7):
        optimizer.step()
        old.step()
    rebuilt = scheduler_at(config, optimizer, 10, 17)
    assert rebuilt.last_epoch == reference.last_epoch == 17
    for got, want in zip(optimizer.param_groups, reference_optimizer.param_groups):
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-12) and got["momentum"] == want["momentum"]
