import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from builders import write_image
from mlic_pipe.check import check_index, inspect_image
from mlic_pipe.cli import main
from mlic_pipe.datasets import LabelIndex


def _jpeg_bytes(size=(128, 96), mode="RGB"):
    """A noisy JPEG: most of its bytes are entropy-coded data, after the headers."""
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).convert(mode).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def odd_files(tmp_path):
    """Each file and the problems `inspect_image` must find in it, written out by hand."""
    d = tmp_path / "img"
    d.mkdir()
    cases = {}

    def put(name, data, problems):
        (d / name).write_bytes(data)
        cases[str(d / name)] = problems

    good = _jpeg_bytes()
    put("good.jpg", good, [])
    put("zero.jpg", b"", ["zero bytes"])
    put("text.jpg", b"this is not an image at all\n", ["not an image"])
    put("cut_header.jpg", good[:12], ["truncated header"])
    put("cut_data.jpg", good[: len(good) * 2 // 3], ["truncated data"])
    put("cmyk.jpg", _jpeg_bytes(mode="CMYK"), ["CMYK"])
    write_image(d / "gray.png", size=(40, 40), mode="L"); cases[str(d / "gray.png")] = ["grayscale"]
    write_image(d / "rgba.png", size=(40, 40), mode="RGBA", color=(1, 2, 3, 4)); cases[str(d / "rgba.png")] = ["alpha"]
    Image.new("P", (40, 40)).save(d / "palette.png"); cases[str(d / "palette.png")] = ["palette"]
    write_image(d / "tiny.png", size=(1, 1)); cases[str(d / "tiny.png")] = ["tiny"]
    cases[str(d / "missing.jpg")] = ["missing"]
    return cases


def test_inspect_image_finds_each_problem(odd_files):
    for path, problems in odd_files.items():
        assert inspect_image(path) == problems, path


def test_check_index_summarises_labels_and_files(odd_files):
    files = list(odd_files)
    targets = np.zeros((len(files), 3), np.uint8)
    targets[0, [0, 2]] = 1
    targets[1, 2] = 1
    report = check_index(LabelIndex(files, targets, None, ["a", "b", "c"]), progress=False)
    assert report.class_counts.tolist() == [1, 0, 2]
    assert report.num_unusable == 5  # zero, text, cut header, cut data, missing
    assert report.files_by_problem["CMYK"] == [f for f in files if f.endswith("cmyk.jpg")]
    text = report.format()
    for problem in ("zero bytes", "not an image", "truncated header", "truncated data", "CMYK", "grayscale",
                    "alpha", "palette", "tiny", "missing"):
        assert problem in text


def test_cli_check_exit_codes(odd_files, tmp_path, capsys):
    ok = tmp_path / "ok.csv"
    write_image(tmp_path / "ok.jpg", size=(64, 64))
    ok.write_text("path,labels\nok.jpg,a\n")
    assert main(["check", str(ok), "-q"]) == 0
    assert "nothing odd" in capsys.readouterr().out

    rows = "".join(f"{os.path.relpath(p, tmp_path)},a\n" for p in odd_files if not p.endswith("missing.jpg"))
    bad = tmp_path / "bad.csv"
    bad.write_text("path,labels\n" + rows)
    assert main(["check", str(bad), "-q"]) == 1
    captured = capsys.readouterr()
    assert "zero.jpg" in captured.out and "cannot be decoded" in captured.err


def test_cli_reports_data_errors_without_a_traceback(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nothing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "mlic_pipe", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("profile", "check", "demo-data"):
        assert command in out


def test_profile_times_every_stage_and_the_model(demo_root, capsys, tmp_path):
    out = tmp_path / "profile.json"
    assert main(["profile", "--steps", "3", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
                 "--model", "resnet18", "--render-threads", "2", "-q", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "compiled one-pass CPU renderer (numba), on 2 threads" in table  # --render-threads reached the loader
    assert "400 images, 11 classes" in table and "B=8 (+2 mixed)" in table
    for stage in ("read + decode + crop", "plan", "render", "targets", "model forward + backward (resnet18)"):
        assert stage in table
    numbers = json.loads(out.read_text())
    assert set(numbers["stage_ms"]) == {"dali", "plan", "render", "targets", "model"}
    assert all(ms > 0 for ms in numbers["stage_ms"].values())
    assert numbers["images_per_s"] == pytest.approx(3 * 8 / numbers["seconds"])
    assert numbers["augmentation_ms"] == pytest.approx(sum(numbers["stage_ms"][s] for s in ("plan", "render", "targets")))
    assert numbers["outputs_per_step"] == 10
    assert numbers["auto_augment_ms"] is None and "auto-augment" not in table
    assert "resize: PIL's bilinear, bit for bit" in table and numbers["resize"].startswith("PIL's bilinear")
    assert "lower priority" in table  # the note on the decode's threads, on the CPU
    assert "plan: " not in table  # SpliceMix plans without compiled functions


@pytest.mark.parametrize("mix, name", [("fmix", "FMix's normals and ranks"),
                                       ("saliencymix", "SaliencyMix's saliency maps")])
def test_profile_names_the_compiled_plan_functions_and_their_first_call(demo_root, capsys, tmp_path, mix, name):
    out = tmp_path / "profile.json"
    assert main(["profile", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--image-size", "32", "--mix", mix,
                 "-q", "--json", str(out)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  plan: "))
    assert f"{name} compiled (numba), first call" in line and " s (compiling once per machine" in line
    assert json.loads(out.read_text())["plan_kernels"] == line[len("  plan: "):]


def test_profile_times_auto_augment_apart(demo_root, capsys, tmp_path):
    """With --auto-augment, bare DALI batches with and without the policy: the policy's ops take time."""
    out = tmp_path / "profile.json"
    assert main(["profile", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--image-size", "64", "--mix",
                 "none", "--auto-augment", "rand-m9-n2-mstd0.5-p1", "-q", "--json", str(out)]) == 0
    assert "auto-augment rand-m9-n2-mstd0.5" in capsys.readouterr().out
    with_it, without = json.loads(out.read_text())["auto_augment_ms"]
    assert with_it > without > 0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_profile_with_a_model_takes_half_precision_images_on_the_cpu(demo_root, capsys, dtype):
    """The GPU session's dry run found it: a float32 model was fed bf16 images without autocast on the CPU."""
    assert main(["profile", "--steps", "1", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
                 "--model", "resnet18", "--dtype", dtype, "--device", "cpu", "-q"]) == 0
    assert "model forward + backward (resnet18)" in capsys.readouterr().out


def test_check_on_the_demo_data_is_clean(demo_root, capsys):
    assert main(["check", "demo", "-q"]) == 0
    assert "images          400" in capsys.readouterr().out


def test_check_takes_a_coco_file_outside_coco_layout_and_lists_its_missing_images(tmp_path, capsys):
    from builders import write_coco

    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", size=(64, 64))
    write_image(photos / "b.jpg", size=(64, 64))
    annotations = write_coco(tmp_path / "labels" / "my.json", [(1, "a.jpg"), (2, "b.jpg"), (3, "gone.jpg")],
                             [(1, "cat")], [(1, 1, 0), (3, 1, 0)])
    # without --images the hint is spelled as this command's flag, not as a Python keyword
    assert main(["check", annotations, "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot tell where its images are (pass --images DIR)" in err and "image_dir" not in err
    # with it, the missing file is listed among the unusable ones and the exit code says so
    assert main(["check", annotations, "--images", str(photos), "-q"]) == 1
    captured = capsys.readouterr()
    assert "missing" in captured.out and "gone.jpg" in captured.out and "Traceback" not in captured.err
    assert "1 files are missing or cannot be decoded" in captured.err


def test_data_error_hints_fit_the_caller(tmp_path):
    from builders import write_coco
    from mlic_pipe.datasets import load
    from mlic_pipe.errors import MLICDataError, spell_options

    annotations = write_coco(tmp_path / "x" / "my.json", [(1, "a.jpg")], [(1, "cat")], [])
    with pytest.raises(MLICDataError, match=r"cannot tell where its images are \(pass image_dir=\.\.\.\)$"):
        load(annotations)  # a Python caller reads the keyword
    assert spell_options("pass {on_error:skip} or {missing:drop}") == "pass on_error='skip' or missing='drop'"
    assert spell_options("pass {on_error:skip} or {image_dir:}", {"image_dir": "--images DIR"}) == \
        "pass --on-error skip or --images DIR"
    assert spell_options("{epochs} must be {epochs:3}", {}) == "--epochs must be --epochs 3"
    assert spell_options("{epochs:3}") == "epochs=3"


def test_a_set_of_thousands_of_classes_shows_the_commonest_and_rarest_only():
    from mlic_pipe.check import CLASSES_SHOWN, CheckReport

    counts = np.arange(9605)[::-1] % 700  # descending-ish, with zeros
    report = CheckReport(num_images=800, classes=[f"class {k}" for k in range(9605)],
                         labels_per_image=np.full(800, 3), class_counts=counts, num_ignored=0, files_by_problem={})
    table = report.format().split("class frequencies")[1].split("\n\n")[0].splitlines()
    assert f"the {CLASSES_SHOWN} commonest and rarest of 9605; {int((counts == 0).sum())} classes have" in table[0]
    shown = [line.split()[:2] for line in table[1:] if line.strip() != "..."]
    assert len(shown) == 2 * CLASSES_SHOWN
    order = sorted(range(9605), key=lambda k: -counts[k])
    assert [f"class {k}" for k in order[:CLASSES_SHOWN] + order[-CLASSES_SHOWN:]] == [" ".join(s) for s in shown]
