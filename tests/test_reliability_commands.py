"""Issue 14, "nothing lost, nothing silently wrong": every guarantee of docs/reliability.md proved through the real
commands (`transformers_hsvlt.cli.<command>.main(argv)`, returning the exit code; subprocesses where a signal or a
resource limit is needed). Fixtures are tiny: a 4-stage HSVLT of widths 8-32 at 32 px, digit runs of 2 steps.

Not repeated here: the killed-and-resumed run, pickled weights and bad images of datasets (tests/test_reliability.py);
the pipeline and the CLI agreeing on 16-bit and transparent images (tests/test_pipeline.py).
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from conftest import CTRL_C_RETURN_CODES, restore_default_sigint, tiny_config
from PIL import Image
from reference_hsvlt import write_authors_checkpoint
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, BertTokenizer

from transformers_hsvlt import HSVLTForMultiLabelClassification, hub
from transformers_hsvlt.checkpoints import image_processor_for, load_checkpoint, write_checkpoint
from transformers_hsvlt.cli import calibrate as calibrate_cli
from transformers_hsvlt.cli import convert as convert_cli
from transformers_hsvlt.cli import embed_labels as embed_cli
from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.data import DIGIT_CLASS_NAMES
from transformers_hsvlt.images import load_image
from transformers_hsvlt.registry import LabelCooccurrence, LabelSide, get_architecture
from transformers_hsvlt.training import run as train_run
from transformers_hsvlt.training.resume import checkpoint_missing_files
from transformers_hsvlt.visualization import figures


DIGITS = list(DIGIT_CLASS_NAMES)
LABEL_WIDTH = 16
TINY_MODEL = ["--image_size", "32", "--config_overrides", "hidden_sizes=[8,16,24,32],depths=[1,1,1,1]"]
TINY_RUN = [
    "--digits_train_size", "32", "--digits_test_size", "16", "--max_steps", "2",
    "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "no", "--load_best_model_at_end", "false",
    "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--quiet",
    "--random_label_embedding_size", str(LABEL_WIDTH), *TINY_MODEL,
    "--threads", "1",  # as `one_thread`: tiny models run fastest on one thread
]  # fmt: skip
COMMANDS = {
    "hsvlt-train": train_cli,
    "hsvlt-eval": eval_cli,
    "hsvlt-predict": predict_cli,
    "hsvlt-convert": convert_cli,
    "hsvlt-embed-labels": embed_cli,
    "hsvlt-calibrate": calibrate_cli,
}


def run(prog: str, argv, capsys) -> tuple[int, str, str]:
    """Run a command in this process; returns `(exit code, stdout, stderr)`."""
    capsys.readouterr()
    code = COMMANDS[prog].main([str(argument) for argument in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(prog: str, argv, capsys, *fragments) -> str:
    """Run a command that must refuse its input: exit code 2, exactly one line on stderr naming `fragments`."""
    code, _, err = run(prog, argv, capsys)
    assert code == 2, f"{prog} {argv} exited {code}:\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    for fragment in fragments:
        assert str(fragment) in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def file_bytes(directory) -> dict:
    """The bytes of every file under `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()
    }


def edit_weights(checkpoint, edit) -> None:
    """Rewrite `model.safetensors` of `checkpoint` with `edit(state_dict)` applied."""
    weights = checkpoint / "model.safetensors"
    state = load_file(weights)
    edit(state)
    save_file(state, weights, metadata={"format": "pt"})


def edit_json(path, **values) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


# ---- fixtures (module scope: built once) -------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def checkpoint(workdir):
    """A complete remote-code checkpoint of a tiny HSVLT for the digit classes (as `hsvlt-train` writes them)."""
    torch.manual_seed(0)
    config = tiny_config(id2label=dict(enumerate(DIGITS)), label_embedding_size=LABEL_WIDTH, image_size=32)
    model = HSVLTForMultiLabelClassification(config).eval()
    directory = workdir / "checkpoint"
    hub.prepare_for_push(model, image_processor_for(get_architecture("hsvlt"), config), directory)
    return directory


@pytest.fixture(scope="module")
def msrn_checkpoint(workdir):
    """A tiny MSRN checkpoint (the preset `tiny` of the registry)."""
    architecture = get_architecture("msrn")
    names = DIGITS[:4]
    rng = np.random.default_rng(0)
    pair_counts = rng.integers(1, 5, (4, 4))
    np.fill_diagonal(pair_counts, 0)
    label_side = LabelSide(
        names=names,
        embeddings=torch.from_numpy(rng.standard_normal((4, LABEL_WIDTH)).astype(np.float32)),
        cooccurrence=LabelCooccurrence(counts=np.full(4, 6), pair_counts=pair_counts),
    )
    model = architecture.build(architecture.presets["tiny"].config, label_side).eval()
    directory = workdir / "msrn"
    hub.prepare_for_push(model, image_processor_for(architecture, model.config), directory)
    return directory


@pytest.fixture
def copy_of(tmp_path):
    def copy(directory, name=None):
        return shutil.copytree(directory, tmp_path / (name or directory.name))

    return copy


@pytest.fixture(scope="module")
def trained_run(workdir):
    """The output directory of a finished 2-step digits run: checkpoint-1, checkpoint-2, run record, final model."""
    output_dir = workdir / "trained"
    assert train_cli.main([*TINY_RUN, "--output_dir", str(output_dir)]) == 0
    return output_dir


@pytest.fixture(scope="module")
def images(workdir):
    """Three small readable images."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        path = workdir / f"image{index}.png"
        Image.fromarray(rng.integers(0, 255, (24, 28, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def encoder_dir(workdir):
    """A tiny random BERT of width `LABEL_WIDTH` whose vocabulary holds the digit names (and 'ten')."""
    directory = workdir / "tiny-bert"
    directory.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *DIGITS, "ten"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab=str(directory / "vocab.txt")).save_pretrained(directory)
    config = BertConfig(vocab_size=len(vocab), hidden_size=LABEL_WIDTH, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)  # fmt: skip
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def digit_labels(workdir):
    path = workdir / "digits.txt"
    path.write_text("\n".join(DIGITS) + "\n")
    return path


@pytest.fixture(scope="module")
def authors_checkpoint(workdir):
    return write_authors_checkpoint(workdir)


def convert_arguments(checkpoint_file, output, *extra):
    directory = checkpoint_file.parent
    return [checkpoint_file, "--labels", directory / "authors-labels.txt",
            "--label_embeddings", directory / "authors-bert.npy", "--output", output, *extra]  # fmt: skip


# ---- 1. nothing overwritten without asking -------------------------------------------------------------------------


@pytest.mark.slow
def test_train_refuses_a_trained_output_dir_and_overwrites_it_completely(trained_run, copy_of, capsys):
    output_dir = copy_of(trained_run)
    before = file_bytes(output_dir)
    refused("hsvlt-train", [*TINY_RUN, "--output_dir", output_dir], capsys, output_dir, "--overwrite_output_dir")
    assert file_bytes(output_dir) == before

    (output_dir / "notes.txt").write_text("not written by a run")
    shutil.copytree(output_dir / "checkpoint-2", output_dir / "checkpoint-9")  # another run's checkpoint
    code, _, err = run("hsvlt-train", [*TINY_RUN, "--max_steps", "1", "--output_dir", output_dir,
                                       "--overwrite_output_dir"], capsys)  # fmt: skip
    assert code == 0, err
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-1"]
    assert (output_dir / "notes.txt").read_text() == "not written by a run"  # the user's file stays
    assert file_bytes(output_dir)["model.safetensors"] != before["model.safetensors"]


def test_convert_refuses_a_non_empty_output(authors_checkpoint, tmp_path, capsys):
    output = tmp_path / "converted"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")
    refused("hsvlt-convert", convert_arguments(authors_checkpoint, output), capsys, "--output", output, "not empty")
    assert [path.name for path in output.iterdir()] == ["mine.txt"]
    code, _, err = run("hsvlt-convert", convert_arguments(authors_checkpoint, output, "--overwrite_output_dir"), capsys)
    assert code == 0, err
    assert (output / "mine.txt").read_text() == "keep me" and (output / "model.safetensors").is_file()


def test_embed_labels_refuses_to_overwrite_even_its_source(checkpoint, copy_of, encoder_dir, digit_labels, capsys):
    source = copy_of(checkpoint)
    before = file_bytes(source)
    arguments = [digit_labels, "--encoder", encoder_dir, "--output", source.parent / "labels.npy", "--model", source]
    refused("hsvlt-embed-labels", [*arguments, "--save_model", source], capsys, "--save_model", source, "not empty")
    assert file_bytes(source) == before
    code, _, err = run("hsvlt-embed-labels", [*arguments, "--save_model", source, "--overwrite_output_dir"], capsys)
    assert code == 0, err
    model, _ = load_checkpoint(str(source), "cpu")  # replaced completely and atomically: it still loads
    assert np.allclose(model.hsvlt.label_embeddings.weight.numpy(), np.load(source.parent / "labels.npy"))


# ---- 2. resuming only the same run ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_refuses_another_run_naming_the_differences(trained_run, copy_of, capsys):
    output_dir = copy_of(trained_run)
    resume = [*TINY_RUN, "--max_steps", "3", "--output_dir", output_dir, "--resume_from_checkpoint", "last"]
    refused("hsvlt-train", [*resume, "--learning_rate", "0.5", "--seed", "7"], capsys,
            "different run", "--learning_rate", "--seed", "0.5")  # fmt: skip
    code, _, err = run("hsvlt-train", resume, capsys)
    assert code == 0, err
    assert json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3


# ---- 3 and 9. checkpoints whose tensors do not fit, or hold NaN, are refused by every entry point ------------------


def _without(*names):
    def edit(state):
        for name in names:
            del state[name]

    return edit


def _with_nan(name):
    def edit(state):
        state[name][0] = float("nan")

    return edit


BROKEN_HSVLT = {
    "no_classifier": (_without("classifier.weight"), None, ["missing", "classifier.weight"]),
    "no_label_embeddings": (_without("hsvlt.label_embeddings.weight"), None, ["hsvlt.label_embeddings.weight"]),
    "fewer_blocks": (None, [1, 1, 1, 1], ["unexpected", "hsvlt.encoder.stages.2.layers.1"]),
    "more_blocks": (None, [1, 1, 3, 1], ["missing", "hsvlt.encoder.stages.2.layers.2"]),
    "nan_weight": (_with_nan("classifier.weight"), None, ["NaN", "classifier.weight"]),
}


@pytest.mark.parametrize("case", list(BROKEN_HSVLT))
@pytest.mark.slow
def test_checkpoints_that_do_not_fit_are_refused_everywhere(
    case, checkpoint, copy_of, images, encoder_dir, digit_labels, tmp_path, capsys
):
    edit, depths, fragments = BROKEN_HSVLT[case]
    broken = copy_of(checkpoint)
    if edit is not None:
        edit_weights(broken, edit)
    if depths is not None:
        edit_json(broken / "config.json", depths=depths)
    for prog, argv in [
        ("hsvlt-predict", [broken, images[0]]),
        ("hsvlt-eval", [broken, "--digits_train_size", "4", "--digits_test_size", "4"]),
        ("hsvlt-train", [*TINY_RUN, "--model_name_or_path", broken, "--output_dir", tmp_path / "run"]),
        ("hsvlt-embed-labels", [digit_labels, "--encoder", encoder_dir, "--output", tmp_path / "labels.npy",
                                "--model", broken, "--save_model", tmp_path / "relabelled"]),
    ]:  # fmt: skip
        refused(prog, argv, capsys, broken, *fragments)
    assert not (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "relabelled").exists()


@pytest.mark.parametrize("case", ["missing", "nan"])
@pytest.mark.slow
def test_msrn_checkpoints_that_do_not_fit_are_refused(case, msrn_checkpoint, copy_of, images, capsys):
    broken = copy_of(msrn_checkpoint)
    name = next(key for key in load_file(broken / "model.safetensors") if key.endswith("weight"))
    edit_weights(broken, _without(name) if case == "missing" else _with_nan(name))
    refused("hsvlt-predict", [broken, images[0]], capsys, broken, name, "missing" if case == "missing" else "NaN")
    code, out, err = run("hsvlt-predict", [msrn_checkpoint, images[0]], capsys)
    assert code == 0 and str(images[0]) in out, err


def test_convert_refuses_nan_weights(authors_checkpoint, tmp_path, capsys):
    state = torch.load(authors_checkpoint, weights_only=True)["state_dict"]
    state["text_head2.weight"][1, 2] = float("nan")
    nan_checkpoint = tmp_path / "nan.pth"
    torch.save({"state_dict": state}, nan_checkpoint)
    output = tmp_path / "out"
    shutil.copy(authors_checkpoint.parent / "authors-labels.txt", tmp_path)
    shutil.copy(authors_checkpoint.parent / "authors-bert.npy", tmp_path)
    refused("hsvlt-convert", convert_arguments(nan_checkpoint, output), capsys, "NaN", "classifier.weight")
    assert not output.exists()


# ---- 4. an interrupted final save leaves the previous checkpoint intact --------------------------------------------


@pytest.mark.slow
def test_full_disk_during_the_final_save_keeps_the_previous_checkpoint(trained_run, copy_of, monkeypatch, capsys):
    output_dir = copy_of(trained_run)
    final_files = {name: data for name, data in file_bytes(output_dir).items() if "/" not in name}

    def disk_full(*args, **kwargs):  # after the weights, config and image processor of the new checkpoint
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hub, "save_model_card", disk_full)
    refused("hsvlt-train", [*TINY_RUN, "--output_dir", output_dir, "--overwrite_output_dir"], capsys,
            "No space left on device")  # fmt: skip
    assert {name: data for name, data in file_bytes(output_dir).items() if "/" not in name} == final_files
    assert [path.name for path in output_dir.parent.iterdir() if path.name.startswith(".")] == []
    load_checkpoint(str(output_dir), "cpu")


def test_write_checkpoint_failing_midway_changes_nothing(checkpoint, copy_of, monkeypatch):
    target = copy_of(checkpoint)
    before = file_bytes(target)
    model, processor = load_checkpoint(str(checkpoint), "cpu")
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    real_save_file = hub.save_model_card

    def fail_after_writing(*args, **kwargs):
        real_save_file(*args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hub, "save_model_card", fail_after_writing)
    with pytest.raises(OSError, match="No space left"):
        write_checkpoint(model, processor, target)
    assert file_bytes(target) == before
    assert sorted(path.name for path in target.parent.iterdir()) == [target.name]


# ---- 5 and 13. argument errors: one line, exit 2, before any model is loaded or image decoded -----------------------


@pytest.mark.parametrize("epochs", ["0", "-1", "nan"])
def test_train_refuses_no_epochs(epochs, tmp_path, capsys):
    refused("hsvlt-train", ["--num_train_epochs", epochs, "--output_dir", tmp_path / "run"], capsys,
            "--num_train_epochs")  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def unloadable_checkpoint(workdir, checkpoint):
    """A checkpoint whose config reads but whose weights do not: an argument error reported instead of this file's
    error was found before the model was loaded."""
    directory = shutil.copytree(checkpoint, workdir / "unloadable")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    return directory


PREDICT_ARGUMENT_ERRORS = [
    (["--threshold", "1.5"], "--threshold"),
    (["--threshold", "nan"], "--threshold"),
    (["--threshold", "-0.1"], "--threshold"),
    (["--top_k", "0"], "--top_k"),
    (["--heatmaps", "HEATMAPS", "--heatmap_stage", "7"], "--heatmap_stage"),
    (["--batch_size", "0"], "--batch_size"),
    (["--batch_size", "-2"], "--batch_size"),
    (["--device", "tpu:7"], "--device tpu:7"),
    (["--max_download_mb", "0"], "--max_download_mb"),
]


@pytest.mark.parametrize("arguments, flag", PREDICT_ARGUMENT_ERRORS)
def test_predict_argument_errors_come_first(arguments, flag, unloadable_checkpoint, images, tmp_path, capsys):
    arguments = [str(tmp_path / "heatmaps") if value == "HEATMAPS" else value for value in arguments]
    line = refused("hsvlt-predict", [unloadable_checkpoint, images[0], *arguments], capsys, flag)
    assert "safetensors" not in line and not (tmp_path / "heatmaps").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a PyTorch build or machine without CUDA")
@pytest.mark.parametrize("prog", ["hsvlt-predict", "hsvlt-eval", "hsvlt-embed-labels"])
def test_cuda_on_a_machine_without_it_is_refused_first(prog, unloadable_checkpoint, images, digit_labels, capsys):
    argv = {
        "hsvlt-predict": [unloadable_checkpoint, images[0]],
        "hsvlt-eval": [unloadable_checkpoint],
        "hsvlt-embed-labels": [digit_labels, "--output", "unused.npy"],
    }[prog]
    refused(prog, [*argv, "--device", "cuda"], capsys, "--device cuda", "no CUDA")


@pytest.mark.parametrize(
    "arguments, flag",
    [
        (["--threshold", "nan"], "--threshold"),
        (["--top_k", "0"], "--top_k"),
        (["--batch_size", "0"], "--batch_size"),
        (["--max_eval_samples", "0"], "--max_eval_samples"),
        (["--device", "tpu:7"], "--device tpu:7"),
        (["--json", "/nonexistent-directory/results.json"], "/nonexistent-directory"),
    ],
)
def test_eval_argument_errors_come_first(arguments, flag, unloadable_checkpoint, capsys):
    line = refused(
        "hsvlt-eval",
        [unloadable_checkpoint, "--digits_train_size", "4", "--digits_test_size", "4", *arguments],
        capsys,
        flag,
    )
    assert "safetensors" not in line


def test_eval_refuses_an_empty_evaluation_list_before_loading_the_model(unloadable_checkpoint, tmp_path, capsys):
    (tmp_path / "label.txt").write_text("cat\ndog\n")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "train.txt").write_text("a.png\tcat\n")
    (tmp_path / "test.txt").write_text("\n")
    line = refused("hsvlt-eval", [unloadable_checkpoint, "--dataset", "list", "--label_file", tmp_path / "label.txt",
                                  "--train_list", tmp_path / "train.txt", "--eval_list", tmp_path / "test.txt"],
                   capsys, "--eval_list", "has no image")  # fmt: skip
    assert "safetensors" not in line


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (["--image_size", "100000"], ["--image_size 100000", "GiB"]),
        (["--image_size", "0"], ["image_size", "0"]),
        (["--config_overrides", "drop_path_rate=1.5"], ["drop_path_rate", "[0, 1)", "1.5"]),
        (["--config_overrides", "patch_size=0"], ["patch_size", "0"]),
        (["--config_overrides", "num_channels=-1"], ["num_channels", "-1"]),
        (["--config_overrides", "depths=deep"], ["depths", "deep"]),
        (["--config_overrides", "drop_path=0.1"], ["drop_path", "not fields of HSVLTConfig"]),
        (["--per_device_train_batch_size", "0"], ["--per_device_train_batch_size"]),
    ],
)
def test_train_argument_errors(arguments, fragments, tmp_path, capsys, monkeypatch):
    """Refused before the data is read."""
    monkeypatch.setattr(train_run, "family_data", None)
    refused("hsvlt-train", [*TINY_RUN, "--output_dir", tmp_path / "run", *arguments], capsys, *fragments)
    assert not (tmp_path / "run").exists()


def test_config_fields_of_the_wrong_type_are_one_line_errors(checkpoint, copy_of, images, capsys):
    broken = copy_of(checkpoint)
    edit_json(broken / "config.json", image_size="32")
    refused("hsvlt-predict", [broken, images[0]], capsys, "image_size", "expected int")


def test_duplicate_label_names_in_a_config_are_refused(checkpoint, copy_of, images, capsys):
    broken = copy_of(checkpoint)
    edit_json(broken / "config.json", id2label={str(index): "seven" if index == 3 else name
                                                for index, name in enumerate(DIGITS)})  # fmt: skip
    refused("hsvlt-predict", [broken, images[0]], capsys, "id2label", "seven")


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_states_each_default_once(prog, capsys):
    """No option reads "(default: the preset's). (default: None)": a help text that states its default gets no
    appended "(default: X)"; the others do."""
    with pytest.raises(SystemExit) as exited:
        COMMANDS[prog].main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out.split("options:", 1)[1]
    options = [option for option in re.split(r"\n(?=  -)", help_text) if option.strip()]
    stated = {option.split()[0]: re.findall(r"\(default[: ]|\bdefault:", option, re.IGNORECASE) for option in options}
    assert {name: len(found) for name, found in stated.items() if len(found) > 1} == {}
    assert sum(len(found) == 1 for found in stated.values()) > len(options) / 2  # the others still show theirs


# ---- 6. relabelling writes a complete checkpoint and says which labels are new --------------------------------------


def test_embed_labels_with_new_names(checkpoint, encoder_dir, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["ten", *DIGITS[1:]]) + "\n")
    arguments = [labels, "--encoder", encoder_dir, "--output", tmp_path / "labels.npy", "--model", checkpoint,
                 "--save_model", tmp_path / "relabelled"]  # fmt: skip
    refused("hsvlt-embed-labels", arguments, capsys, "'ten'", "--allow_untrained_labels")
    assert not (tmp_path / "relabelled").exists() and not (tmp_path / "labels.npy").exists()

    code, out, err = run("hsvlt-embed-labels", [*arguments, "--allow_untrained_labels"], capsys)
    assert code == 0, err
    assert "need fine-tuning" in out and "ten" in out.split("need fine-tuning")[1]
    written = {path.name for path in (tmp_path / "relabelled").iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "image_processing_multilabel.py",
            "modeling_hsvlt.py", "README.md"} <= written  # fmt: skip
    model, processor = load_checkpoint(str(tmp_path / "relabelled"), "cpu")
    assert list(model.config.id2label.values())[0] == "ten" and processor.size == {"height": 32, "width": 32}


# ---- 8. heatmaps: unique names, predictions first, failures limited to the heatmaps --------------------------------


@pytest.mark.slow
def test_heatmaps_of_images_with_the_same_file_name(checkpoint, images, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="heatmap figures need matplotlib (the demo extra)")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(images[0], tmp_path / folder / "img.png")
    first, second = tmp_path / "a" / "img.png", tmp_path / "b" / "img.png"
    arguments = ["--threshold", "0", "--top_k", "2"]
    code, _, err = run("hsvlt-predict", [checkpoint, first, *arguments, "--heatmaps", tmp_path / "one"], capsys)
    assert code == 0, err
    per_image = len(list((tmp_path / "one").iterdir()))
    assert per_image > 0
    code, _, err = run("hsvlt-predict", [checkpoint, first, second, *arguments, "--heatmaps", tmp_path / "two"], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "two").iterdir())) == 2 * per_image


@pytest.mark.slow
def test_heatmaps_into_a_non_empty_directory_need_the_overwrite_flag(checkpoint, images, tmp_path, capsys):
    """The quick start's `hsvlt-predict ... --heatmaps DIR` run twice: the second run is refused, one line, exit 2,
    nothing written, unless `--overwrite_output_dir`."""
    heatmaps = tmp_path / "heatmaps"
    arguments = [checkpoint, images[0], "--threshold", "0", "--top_k", "1", "--heatmaps", heatmaps]
    assert run("hsvlt-predict", arguments, capsys)[0] == 0
    written = {path: path.stat().st_mtime_ns for path in heatmaps.iterdir()}
    code, out, err = run("hsvlt-predict", arguments, capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"hsvlt-predict: error: --heatmaps {heatmaps} is not empty (it holds "
        f"{', '.join(sorted(path.name for path in written))}): pass --overwrite_output_dir to replace it, or choose "
        "another directory."
    ]
    assert {path: path.stat().st_mtime_ns for path in heatmaps.iterdir()} == written
    code, out, err = run("hsvlt-predict", [*arguments, "--overwrite_output_dir"], capsys)
    assert code == 0 and str(images[0]) in out, err
    assert set(heatmaps.iterdir()) == set(written)


@pytest.mark.slow
def test_heatmap_figures_of_examples_show_their_true_labels(checkpoint, images, tmp_path, capsys, monkeypatch):
    """An image named as training's examples (`00_one-four.png`) gets a figure with its true labels (and so the
    missed ones, see tests/test_visualization.py); an image of any other name, a figure without."""
    example = tmp_path / f"00_{DIGITS[1]}-{DIGITS[4]}.png"
    shutil.copy(images[0], example)
    truths = {}

    def prediction_figure(image, prediction, ground_truth=None):
        truths[os.path.basename(prediction.source)] = ground_truth
        return draw(image, prediction, ground_truth)

    draw = figures.prediction_figure
    monkeypatch.setattr(figures, "prediction_figure", prediction_figure)
    code, _, err = run("hsvlt-predict", [checkpoint, example, images[1], "--heatmaps", tmp_path / "maps"], capsys)
    assert code == 0, err
    assert truths == {example.name: [DIGITS[1], DIGITS[4]], images[1].name: None}
    assert (tmp_path / "maps" / f"{example.stem}.png").is_file()


def test_unwritable_heatmaps_lose_no_prediction(checkpoint, images, tmp_path, capsys):
    blocked = tmp_path / "heatmaps"
    blocked.write_text("a file where the heatmap directory should go")
    code, out, err = run("hsvlt-predict", [checkpoint, *images, "--heatmaps", blocked, "--top_k", "1"], capsys)
    assert code == 1
    assert all(str(image) in out for image in images)
    assert "heatmaps" in err and "Traceback" not in err
    assert blocked.read_text().startswith("a file")


# ---- 9. NaN inputs -------------------------------------------------------------------------------------------------


def test_nan_pixels_are_an_error_for_that_image(checkpoint, images, tmp_path, capsys):
    pixels = np.full((16, 16), 0.5, dtype=np.float32)
    pixels[3, 4] = np.nan
    nan_image = tmp_path / "nan.tiff"
    Image.fromarray(pixels, mode="F").save(nan_image)
    code, out, err = run("hsvlt-predict", [checkpoint, nan_image, images[0]], capsys)
    assert code == 1
    assert str(images[0]) in out and str(nan_image) not in out
    assert str(nan_image) in err and "NaN" in err and "nan" not in out


# ---- 10, 14, 15. files: bad data files and checkpoint files name themselves -----------------------------------------


def _list_dataset(directory, label_text: str, list_text: str, encoding="utf-8") -> list:
    Image.new("RGB", (8, 8)).save(directory / "a.png")
    Image.new("RGB", (8, 8), "white").save(directory / "b.png")
    (directory / "label.txt").write_text(label_text, encoding="utf-8")
    (directory / "list.txt").write_bytes(list_text.encode(encoding))
    return ["--dataset", "list", "--label_file", directory / "label.txt", "--train_list", directory / "list.txt",
            "--eval_list", directory / "list.txt", "--batch_size", "2", "--num_workers", "0", "--quiet"]  # fmt: skip


def test_byte_order_marks_are_dropped(checkpoint, copy_of, tmp_path, capsys):
    model = copy_of(checkpoint)
    edit_json(model / "config.json", id2label={"0": "cat", "1": "dog"}, label2id={"cat": 0, "dog": 1})
    edit_weights(model, lambda state: state.update(
        {name: state[name][:2] for name in ("classifier.weight", "classifier.bias", "hsvlt.label_embeddings.weight")}
    ))  # fmt: skip
    arguments = _list_dataset(tmp_path, "\ufeffcat\ndog\n", "\ufeffa.png\tcat\nb.png\tdog\n")
    code, out, err = run("hsvlt-eval", [model, *arguments], capsys)
    assert code == 0, err
    assert "\ufeff" not in out and "cat" in out
    (tmp_path / "data.csv").write_text("\ufeffimage,labels\na.png,cat\nb.png,dog\n", encoding="utf-8")
    code, out, err = run("hsvlt-eval", [model, "--dataset", "custom", "--data_dir", tmp_path / "data.csv",
                                        "--train_split", "train", "--eval_split", "train", "--quiet"], capsys)  # fmt: skip
    assert code == 0, err


def test_list_file_errors_name_the_file(checkpoint, tmp_path, capsys):
    arguments = _list_dataset(tmp_path, "cat\ndog\n", "a.png\tcat\nb.png\tdog\u00e9\n", encoding="latin-1")
    refused("hsvlt-eval", [checkpoint, *arguments], capsys, tmp_path / "list.txt", "UTF-8")
    arguments = _list_dataset(tmp_path, "cat\ndog\n", "a.png\tcat\nb.png\tdog\na.png\tdog\n")
    refused("hsvlt-eval", [checkpoint, *arguments], capsys, tmp_path / "list.txt", "lines 1 and 3")


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("data.csv", "image,labels\na.png,cat\nb.png\n", ["data.csv:3", "labels"]),
        ("data.jsonl", '{"image": "a.png", "labels": ["cat"]}\n["b.png", "dog"]\n', ["data.jsonl:2", "JSON object"]),
    ],
)
def test_data_file_rows_errors_name_file_and_line(name, content, fragments, checkpoint, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    (tmp_path / name).write_text(content)
    refused("hsvlt-eval", [checkpoint, "--dataset", "custom", "--data_dir", tmp_path / name, "--train_split", "train",
                           "--eval_split", "train"], capsys, *fragments)  # fmt: skip


@pytest.mark.slow
def test_corrupt_checkpoint_files_are_named(checkpoint, copy_of, images, capsys):
    truncated = copy_of(checkpoint, "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    refused("hsvlt-predict", [truncated, images[0]], capsys, weights, "truncated or corrupt")
    bad_processor = copy_of(checkpoint, "bad-processor")
    (bad_processor / "preprocessor_config.json").write_text('{"size": {"height": 32, ')
    refused("hsvlt-predict", [bad_processor, images[0]], capsys, "preprocessor_config.json", "JSON")
    refused(
        "hsvlt-eval",
        [bad_processor, "--digits_train_size", "4", "--digits_test_size", "4"],
        capsys,
        "preprocessor_config.json",
    )


@pytest.mark.parametrize(
    "flag, value",
    [("--backbone", "/nonexistent/convnext"), ("--model_name_or_path", "./no-such-checkpoint"),
     ("--text_encoder", "/nonexistent/bert"), ("--label_embeddings", "EMPTY_NPY")],
)  # fmt: skip
@pytest.mark.slow
def test_train_missing_or_empty_input_files(flag, value, tmp_path, capsys):
    if value == "EMPTY_NPY":
        value = tmp_path / "empty.npy"
        value.write_bytes(b"")
    refused("hsvlt-train", [*TINY_RUN, flag, value, "--output_dir", tmp_path / "run"], capsys, value)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_unwritable_outputs_are_refused_before_the_work(checkpoint, authors_checkpoint, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    refused("hsvlt-train", [*TINY_RUN, "--output_dir", a_file], capsys, a_file, "is a file")
    refused("hsvlt-train", [*TINY_RUN, "--output_dir", a_file / "run"], capsys, a_file, "is a file")
    refused("hsvlt-convert", convert_arguments(authors_checkpoint, a_file), capsys, a_file, "is a file")
    refused("hsvlt-eval", [checkpoint, "--json", tmp_path], capsys, tmp_path, "directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_read_only_outputs_are_refused_before_the_work(checkpoint, tmp_path, capsys):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    refused("hsvlt-train", [*TINY_RUN, "--output_dir", read_only / "run"], capsys, "permission denied")
    refused("hsvlt-eval", [checkpoint, "--json", read_only / "r.json"], capsys, "permission denied")


def test_convert_refuses_a_text_file(authors_checkpoint, tmp_path, capsys):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    shutil.copy(authors_checkpoint.parent / "authors-labels.txt", tmp_path)
    shutil.copy(authors_checkpoint.parent / "authors-bert.npy", tmp_path)
    refused("hsvlt-convert", convert_arguments(text, tmp_path / "out"), capsys, text)
    assert not (tmp_path / "out").exists()


# ---- 11. downloads: a total time limit and a size limit --------------------------------------------------------------


class _Server(BaseHTTPRequestHandler):
    """`/trickle`: one byte every 0.2 s (at most 25); `/big`: 3 MiB without Content-Length; `/announced`: a
    Content-Length of 100 MiB; `/image`: a real PNG padded to 40 MiB."""

    png = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        try:
            if self.path == "/announced":
                self.send_header("Content-Length", str(100 * 2**20))
                self.end_headers()
                return
            self.end_headers()
            if self.path == "/trickle":
                for _ in range(25):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            elif self.path == "/big":
                for _ in range(48):
                    self.wfile.write(b"\0" * 2**16)
            elif self.path == "/image":
                self.wfile.write(self.png)
                for _ in range(640):
                    self.wfile.write(bytes(2**16))
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(images):
    _Server.png = images[0].read_bytes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.slow
def test_downloads_have_a_time_and_a_size_limit(checkpoint, images, server, capsys):
    start = time.monotonic()
    code, out, err = run("hsvlt-predict", [checkpoint, f"{server}/trickle", f"{server}/big", f"{server}/announced",
                                           images[0], "--download_seconds", "1", "--max_download_mb", "1"], capsys)  # fmt: skip
    assert time.monotonic() - start < 4
    assert code == 1 and str(images[0]) in out and server not in out
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in err
    assert f"{server}/trickle" in lines[0] and "more than 1 s" in lines[0]
    assert f"{server}/big" in lines[1] and "exceeds the limit of 1,048,576 bytes" in lines[1]
    assert f"{server}/announced" in lines[2] and "announces 104,857,600 bytes" in lines[2]


def test_downloads_are_streamed_to_disk(server):
    tracemalloc.start()
    try:
        image = load_image(f"{server}/image", max_download_bytes=64 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.size == (28, 24)
    assert peak < 20 * 2**20  # the 40 MiB body never was in memory at once


# ---- 12. images streamed in batches ------------------------------------------------------------------------------


def test_predictions_are_printed_batch_by_batch(checkpoint, images, monkeypatch, capsys):
    events = []
    real_load, real_print = predict_cli.load_image, predict_cli.PredictionPrinter.print
    monkeypatch.setattr(predict_cli, "load_image", lambda *a, **k: events.append("decode") or real_load(*a, **k))
    monkeypatch.setattr(predict_cli.PredictionPrinter, "print",
                        lambda self, predictions: events.extend(["print"] * len(predictions))
                        or real_print(self, predictions))  # fmt: skip
    code, out, err = run("hsvlt-predict", [checkpoint, *images, "--batch_size", "2"], capsys)
    assert code == 0, err
    assert events == ["decode", "decode", "print", "print", "decode", "print"]
    assert [line for line in out.splitlines() if not line.startswith(" ")] == [str(image) for image in images]


# ---- 16. the Python API ------------------------------------------------------------------------------------------


def test_model_inputs_are_checked(checkpoint):
    model, _ = load_checkpoint(str(checkpoint), "cpu")
    pixels = torch.rand(2, 3, 32, 32)
    expected = model(pixel_values=pixels).logits
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        torch.testing.assert_close(model(pixel_values=pixels.to(dtype)).logits, expected, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="floating-point.*uint8"):
        model(pixel_values=(pixels * 255).to(torch.uint8))
    for labels in (torch.full((2, 10), 2.0), torch.full((2, 10), -0.5)):
        with pytest.raises(ValueError, match="labels"):
            model(pixel_values=pixels, labels=labels)
    assert torch.isfinite(model(pixel_values=pixels, labels=torch.full((2, 10), -1.0)).loss)


@pytest.fixture(scope="module")
def python_api_in_a_subprocess(checkpoint, images, workdir):
    """One fresh process (imports are slow) with at most 256 open files and stdin not a terminal: the processor given
    300 image paths; `pipeline` and `AutoModel` without `trust_remote_code`; `AutoModel` on a checkpoint holding
    only `pytorch_model.bin`. Returns what each did, as a dict."""
    bin_only = shutil.copytree(checkpoint, workdir / "bin-only")
    torch.save(load_file(bin_only / "model.safetensors"), bin_only / "pytorch_model.bin")
    (bin_only / "model.safetensors").unlink()
    script = f"""
        import json, resource, time
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        from transformers import AutoModelForImageClassification, pipeline

        def outcome(load):
            try:
                load()
                return "loaded"
            except (OSError, ValueError) as error:
                return "refused: " + " ".join(str(error).split())

        result = {{}}
        start = time.monotonic()
        result["pipeline"] = outcome(lambda: pipeline("image-classification", model={str(checkpoint)!r}))
        result["auto_model"] = outcome(lambda: AutoModelForImageClassification.from_pretrained({str(checkpoint)!r}))
        result["seconds"] = time.monotonic() - start
        result["bin_only"] = outcome(
            lambda: AutoModelForImageClassification.from_pretrained({str(bin_only)!r}, trust_remote_code=True)
        )
        # the package registers its classes with the Auto classes: imported last, not to hide the remote code
        from transformers_hsvlt.image_processing_multilabel import MultiLabelImageProcessor

        processor = MultiLabelImageProcessor.from_pretrained({str(checkpoint)!r})
        result["shape"] = list(processor(images=[{str(images[0])!r}] * 300, return_tensors="pt")["pixel_values"].shape)
        print("\\nRESULT " + json.dumps(result))
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                               env=env, timeout=300, check=False, stdin=subprocess.PIPE)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.split("\nRESULT ")[-1])


@pytest.mark.slow
def test_processor_closes_the_files_of_paths(python_api_in_a_subprocess):
    """300 image paths under a limit of 256 open files."""
    assert python_api_in_a_subprocess["shape"] == [300, 3, 32, 32]


@pytest.mark.slow
def test_remote_code_without_trust_fails_at_once(python_api_in_a_subprocess):
    """Without a terminal to answer transformers' prompt, the pipeline and AutoModel fail at once, saying what to pass
    (in a terminal transformers asks, and refuses after 15 s without an answer)."""
    for entry in ("pipeline", "auto_model"):
        assert python_api_in_a_subprocess[entry].startswith("refused: ")
        assert "trust_remote_code=True" in python_api_in_a_subprocess[entry]
    assert python_api_in_a_subprocess["seconds"] < 5


@pytest.mark.slow
def test_pickle_only_checkpoints_are_refused_by_auto_model(python_api_in_a_subprocess):
    assert python_api_in_a_subprocess["bin_only"].startswith("refused: ")
    assert "safetensors" in python_api_in_a_subprocess["bin_only"]


# ---- 17. Ctrl-C during training -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_says_where_the_last_checkpoint_is(tmp_path):
    """With the progress bar on, as a user sees it."""
    output_dir, stderr = tmp_path / "run", tmp_path / "stderr.txt"
    arguments = [*(value for value in TINY_RUN if value != "--quiet"), "--max_steps", "500", "--output_dir", output_dir]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with open(stderr, "w") as stderr_file:
        process = subprocess.Popen([sys.executable, "-m", "transformers_hsvlt.cli.train", *map(str, arguments)],
                                   stdout=subprocess.DEVNULL, stderr=stderr_file, env=env,
                                   preexec_fn=restore_default_sigint)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not (output_dir / "checkpoint-2" / "trainer_state.json").exists():
                assert process.poll() is None and time.monotonic() < deadline, "no checkpoint-2 in time"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        finally:
            process.kill()
            process.wait()
    err = stderr.read_text()
    assert process.returncode in CTRL_C_RETURN_CODES and "Traceback" not in err, err[-3000:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if "hsvlt-train" in line]
    assert len(lines) == 1 and lines[0].startswith("hsvlt-train: interrupted"), err[-3000:]
    complete = [path for path in output_dir.glob("checkpoint-*") if checkpoint_missing_files(str(path)) is None]
    last = max(complete, key=lambda path: int(path.name.split("-")[1]))  # Ctrl-C may cut the save of a later one
    assert f"the last complete checkpoint is {last}" in lines[0] and "--resume_from_checkpoint last" in lines[0]
