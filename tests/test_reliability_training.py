"""Issue 19, "nothing lost, round three", the training and output side: every guarantee proved through the real
commands (`transformers_hsvlt.cli.<command>.main(argv)`), with the tiny runs of tests/test_reliability_commands.py.

Output directories given as `.`, relative or through a symlink, or on their own filesystem; overwriting that keeps the
user's files; a degenerate evaluation split; two trainings into one directory; resuming another run's checkpoint by
its path; arguments checked before anything is deleted; fine-tuning on labels in another order; a full disk; argument
and config errors; `hsvlt-eval --dataset list` without a training list; the model card of local data. Tests marked
slow train a tiny model or use the module's trained run.
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_reliability_commands import DIGITS, TINY_RUN, file_bytes, msrn_checkpoint, refused, run  # noqa: F401

from transformers_hsvlt import checkpoints, hub
from transformers_hsvlt.checkpoints import load_checkpoint
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.training.lock import LOCK_NAME
from transformers_hsvlt.training.resume import checkpoint_missing_files


ONE_STEP = [*TINY_RUN, "--max_steps", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability-training")


def train_run(output_dir, *arguments) -> Path:
    assert train_cli.main([str(value) for value in [*TINY_RUN, "--output_dir", output_dir, *arguments]]) == 0
    return Path(output_dir)


@pytest.fixture(scope="module")
def trained_run(workdir):
    """A finished 2-step digits run (checkpoint-1, checkpoint-2, run record, final model)."""
    return train_run(workdir / "trained")


@pytest.fixture(scope="module")
def other_run(workdir):
    """Another run (another seed) in its own output directory."""
    return train_run(workdir / "other", "--seed", "7")


@pytest.fixture
def copy_of(tmp_path):
    def copy(directory):
        return Path(shutil.copytree(directory, tmp_path / directory.name))

    return copy


def list_dataset(directory: Path, names: list[str], rows: list[list[str]], train: bool = True) -> list:
    """The arguments of a `--dataset list` dataset of 32 px images, whose one list is the training (unless `train`
    is false) and the evaluation split."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "label.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    lines = []
    for index, labels in enumerate(rows):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(directory / f"{index}.png")
        lines.append(f"{index}.png\t{','.join(labels)}")
    (directory / "list.txt").write_text("\n".join(lines) + "\n")
    arguments = ["--dataset", "list", "--label_file", directory / "label.txt", "--eval_list", directory / "list.txt"]
    return [*arguments, "--train_list", directory / "list.txt"] if train else arguments


def card_metadata(checkpoint: Path) -> dict:
    return yaml.safe_load((checkpoint / "README.md").read_text().split("---")[1])


# ---- 1. `.`, relative and symlinked output directories; overwriting keeps the user's files -------------------------


@pytest.mark.slow
def test_train_into_the_current_directory_keeps_the_users_files(trained_run, tmp_path, monkeypatch, capsys):
    work = tmp_path / "project"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "data").mkdir()
    (work / "data" / "a.txt").write_text("mine too")
    for name in ("model.safetensors", "config.json", "checkpoint-2"):  # a previous run in the same folder
        source = trained_run / name
        shutil.copytree(source, work / name) if source.is_dir() else shutil.copy(source, work / name)
    monkeypatch.chdir(work)
    code, out, err = run("hsvlt-train", [*ONE_STEP, "--output_dir", ".", "--overwrite_output_dir"], capsys)
    assert code == 0, err
    assert (work / "notes.txt").read_text() == "mine" and (work / "data" / "a.txt").read_text() == "mine too"
    assert sorted(path.name for path in work.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not [path for path in work.iterdir() if path.name.startswith(".")]  # no staging directory or lock left
    load_checkpoint(".", "cpu")


@pytest.mark.slow
def test_train_into_a_symlinked_and_a_relative_output_dir(tmp_path, monkeypatch, capsys):
    (tmp_path / "volume").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "volume")
    monkeypatch.chdir(tmp_path)
    assert run("hsvlt-train", [*ONE_STEP, "--output_dir", "link"], capsys)[0] == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "volume" / "model.safetensors").is_file()
    assert run("hsvlt-train", [*ONE_STEP, "--output_dir", "runs/../relative"], capsys)[0] == 0
    load_checkpoint(str(tmp_path / "relative"), "cpu")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "relative", "runs", "volume"]


def test_convert_into_the_current_directory_keeps_the_users_files(authors_checkpoint, tmp_path, monkeypatch, capsys):
    from test_reliability_commands import convert_arguments

    work = tmp_path / "converted"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    code, _, err = run("hsvlt-convert", convert_arguments(authors_checkpoint, ".", "--overwrite_output_dir"), capsys)
    assert code == 0, err
    assert (work / "notes.txt").read_text() == "mine"
    load_checkpoint(".", "cpu")


@pytest.fixture(scope="module")
def authors_checkpoint(workdir):
    from reference_hsvlt import write_authors_checkpoint

    return write_authors_checkpoint(workdir)


# ---- 2. an output directory on its own filesystem ------------------------------------------------------------------


@pytest.mark.slow
def test_final_save_stages_in_the_output_directorys_own_filesystem(tmp_path, monkeypatch, capsys):
    """`mounted` is made a filesystem of its own: a rename between it and anything outside fails as across devices."""
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    real_replace = os.replace

    def on_its_own_device(path) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(mounted)

    def replace(source, target, **kwargs):
        if on_its_own_device(source) != on_its_own_device(target):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source), None, str(target))
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run("hsvlt-train", [*ONE_STEP, "--output_dir", mounted], capsys)
    assert code == 0, err
    load_checkpoint(str(mounted), "cpu")


# ---- 3. an evaluation split without any positive label -------------------------------------------------------------


def test_an_evaluation_split_without_positive_labels_is_refused_before_training(tmp_path, capsys):
    dataset = list_dataset(tmp_path / "data", ["cat", "dog"], [["cat"], ["dog"], ["cat", "dog"], []])
    (tmp_path / "data" / "empty.txt").write_text("0.png\t\n1.png\t\n")
    arguments = [*ONE_STEP, *dataset, "--eval_list", tmp_path / "data" / "empty.txt", "--output_dir", tmp_path / "run"]
    refused("hsvlt-train", arguments, capsys, "evaluation split", "no image with a positive label", "mAP is undefined")
    assert not (tmp_path / "run").exists()


# ---- 4. two trainings into one output directory --------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_training_into_a_locked_output_dir_is_refused_and_a_dead_runs_lock_taken_over(
    trained_run, copy_of, capsys
):
    output_dir = copy_of(trained_run)
    sleeper = subprocess.Popen(["sleep", "60"])  # stands for a training that is running
    try:
        lock = output_dir / LOCK_NAME
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        before = file_bytes(output_dir)
        arguments = [*ONE_STEP, "--output_dir", output_dir, "--overwrite_output_dir"]
        refused("hsvlt-train", arguments, capsys, "another training", f"process {sleeper.pid}", output_dir)
        assert file_bytes(output_dir) == before
        lock.write_text(json.dumps({"pid": 1, "host": "another-machine"}))
        refused("hsvlt-train", arguments, capsys, "another training", "another-machine", f"delete {lock}")
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
    finally:
        sleeper.kill()
        sleeper.wait()
    code, _, err = run("hsvlt-train", arguments, capsys)  # the lock of a dead process is taken over
    assert code == 0, err
    assert not lock.exists() and sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-1"]


@pytest.mark.slow
def test_a_training_running_into_the_output_dir_refuses_a_second_and_a_crash_leaves_no_stuck_lock(tmp_path, capsys):
    """A real first training (a subprocess, paused once it has saved a checkpoint, then killed)."""
    output_dir = tmp_path / "run"
    arguments = [*TINY_RUN, "--max_steps", "500", "--output_dir", output_dir]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "transformers_hsvlt.cli.train", *map(str, arguments)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (output_dir / "checkpoint-1" / "trainer_state.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "no checkpoint-1 in time"
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        refused(
            "hsvlt-train", [*arguments, "--overwrite_output_dir"], capsys, "another training", f"process {first.pid}"
        )
        assert (output_dir / "checkpoint-1").is_dir()
    finally:
        first.kill()  # a crash: the lock stays behind
        first.wait()
    assert (output_dir / LOCK_NAME).exists()
    done = max(int(path.name.split("-")[1]) for path in output_dir.glob("checkpoint-*")
               if checkpoint_missing_files(str(path)) is None)  # fmt: skip
    resume = [*TINY_RUN, "--max_steps", done + 1, "--output_dir", output_dir, "--resume_from_checkpoint", "last"]
    code, _, err = run("hsvlt-train", resume, capsys)
    assert code == 0, err
    assert not (output_dir / LOCK_NAME).exists() and (output_dir / f"checkpoint-{done + 1}").is_dir()


# ---- 5. resuming from another run's checkpoint ---------------------------------------------------------------------


@pytest.mark.slow
def test_resume_from_a_checkpoint_path_checks_the_checkpoints_own_run(trained_run, other_run, copy_of, capsys):
    output_dir = copy_of(trained_run)
    before = file_bytes(output_dir)
    resume = [*TINY_RUN, "--max_steps", "3", "--output_dir", output_dir, "--resume_from_checkpoint"]
    refused("hsvlt-train", [*resume, other_run / "checkpoint-2"], capsys, "different run", "--seed", "7")
    shutil.rmtree(output_dir / "checkpoint-2")
    shutil.copytree(other_run / "checkpoint-2", output_dir / "checkpoint-2")  # another run's, copied over this one's
    refused("hsvlt-train", [*resume, "last"], capsys, "checkpoint-2", "different run", "--seed")
    assert file_bytes(output_dir)["model.safetensors"] == before["model.safetensors"]


# ---- 6. every argument checked before anything is deleted; the source of fine-tuning is never deleted --------------


@pytest.mark.slow
def test_overwrite_deletes_nothing_when_an_argument_is_wrong(trained_run, copy_of, capsys):
    output_dir = copy_of(trained_run)
    before = file_bytes(output_dir)
    overwrite = [*ONE_STEP, "--output_dir", output_dir, "--overwrite_output_dir"]
    refused(
        "hsvlt-train", [*overwrite, "--dataset", "custom", "--data_dir", output_dir.parent / "typo"], capsys, "typo"
    )
    assert file_bytes(output_dir) == before
    for source in (output_dir / "checkpoint-2", output_dir):
        refused("hsvlt-train", [*overwrite, "--model_name_or_path", source], capsys, source, "this run replaces")
        assert file_bytes(output_dir) == before


# ---- 7. fine-tuning on labels in another order ---------------------------------------------------------------------


@pytest.mark.slow
def test_fine_tuning_on_reordered_labels_keeps_every_trained_label_embedding(trained_run, tmp_path, capsys):
    names = [*reversed(DIGITS), "ten"]
    dataset = list_dataset(tmp_path / "data", names, [["nine", "ten"], ["zero"], ["five", "one"], ["ten"]])
    output_dir = tmp_path / "finetuned"
    code, out, err = run("hsvlt-train", [*ONE_STEP, *dataset, "--model_name_or_path", trained_run,
                                         "--output_dir", output_dir, "--learning_rate", "0"], capsys)  # fmt: skip
    assert code == 0, err
    assert "10 of 11 labels keep their trained embeddings; 1 new label(s) get new vectors (ten)" in out
    trained, _ = load_checkpoint(str(trained_run), "cpu")
    finetuned, _ = load_checkpoint(str(output_dir), "cpu")
    before = dict(zip(trained.config.id2label.values(), trained.hsvlt.label_embeddings.weight))
    after = dict(zip(finetuned.config.id2label.values(), finetuned.hsvlt.label_embeddings.weight))
    assert list(after) == names
    for name in DIGITS:
        torch.testing.assert_close(after[name], before[name])
    assert not any(torch.allclose(after["ten"], vector) for vector in before.values())
    # the card of local data names no dataset, and its metric values are rounded like the metric table
    metadata = card_metadata(output_dir)
    assert "datasets" not in metadata and "list" not in json.dumps(metadata.get("model-index", []))
    assert "mAP" in (output_dir / "README.md").read_text()


@pytest.mark.slow
def test_card_metrics_are_rounded_and_name_the_given_dataset(trained_run, tmp_path, capsys):
    code, _, err = run("hsvlt-train", [*ONE_STEP, "--output_dir", tmp_path / "run", "--dataset_name", "my-digits"],
                       capsys)  # fmt: skip
    assert code == 0, err
    metadata = card_metadata(tmp_path / "run")
    assert metadata["datasets"] == ["my-digits"]
    values = [metric["value"] for entry in metadata["model-index"] for result in entry["results"]
              for metric in result["metrics"]]  # fmt: skip
    assert values and all(value == round(value, 2) for value in values)


def test_fine_tuning_msrn_on_other_labels_is_a_one_line_refusal(msrn_checkpoint, tmp_path, capsys):  # noqa: F811
    """MSRN's checkpoints cannot take other labels (their label graph is built from the training split)."""
    arguments = ["--model", "msrn", "--model_name_or_path", msrn_checkpoint, "--output_dir", tmp_path / "run"]
    refused(
        "hsvlt-train", [*ONE_STEP, *arguments], capsys, msrn_checkpoint, "msrn models have a fixed label set (4 labels)"
    )
    assert not (tmp_path / "run").exists()


# ---- one-line errors: a full disk, arguments, label names ----------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_names_the_disk_and_the_space_needed(trained_run, copy_of, monkeypatch, capsys):
    output_dir = copy_of(trained_run)
    final_files = {name: data for name, data in file_bytes(output_dir).items() if "/" not in name}
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):  # as PyTorch reports a full disk
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")  # fmt: skip
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    line = refused("hsvlt-train", [*ONE_STEP, "--output_dir", output_dir, "--overwrite_output_dir"], capsys,
                   "No space left on device", output_dir, "the disk mounted at", "MiB free", "a checkpoint needs about")  # fmt: skip
    assert "intact" in line
    assert {name: data for name, data in file_bytes(output_dir).items() if "/" not in name} == final_files
    monkeypatch.setattr(torch, "save", real_save)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hub, "save_model_card", disk_full)
    refused("hsvlt-train", [*ONE_STEP, "--output_dir", output_dir, "--overwrite_output_dir"], capsys,
            "the disk mounted at", "the final model about")  # fmt: skip
    assert {name: data for name, data in file_bytes(output_dir).items() if "/" not in name} == final_files


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (["--warmup_epochs", "-1"], ["--warmup_epochs", "-1"]),
        (["--plateau_factor", "2"], ["--plateau_factor", "(0, 1]", "2"]),
        (["--train_labels", ""], ["--train_labels", "names no class"]),
        (["--report_to", "a-tracker-that-is-not-installed"], ["--report_to", "not installed"]),
        (["--dataset", "list", "--label_file", "l.txt", "--eval_list", "e.txt"], ["--train_list"]),
    ],
)
def test_train_argument_errors_are_one_line(arguments, fragments, tmp_path, capsys):
    refused("hsvlt-train", [*ONE_STEP, "--output_dir", tmp_path / "run", *arguments], capsys, *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif("wandb" in __import__("transformers").integrations.get_available_reporting_integrations(),
                    reason="needs a machine without wandb")  # fmt: skip
def test_report_to_a_tracker_that_is_not_installed(tmp_path, capsys):
    refused("hsvlt-train", [*ONE_STEP, "--output_dir", tmp_path / "run", "--report_to", "wandb"], capsys,
            "--report_to wandb", "pip install wandb")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("prog", ["hsvlt-predict", "hsvlt-eval"])
def test_threads_beyond_the_machines_cpus_are_refused(prog, trained_run, capsys):
    refused(prog, [trained_run, "--threads", "100000", *(["x.png"] if prog == "hsvlt-predict" else [])], capsys,
            "--threads", "100000", f"from 1 to {os.cpu_count()}")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["", " zero", "zero ", 5, None])
def test_label_names_that_are_empty_padded_or_not_strings_are_refused(name, trained_run, copy_of, tmp_path, capsys):
    broken = copy_of(trained_run)
    config = json.loads((broken / "config.json").read_text())
    config["id2label"]["0"] = name
    (broken / "config.json").write_text(json.dumps(config))
    image = tmp_path / "image.png"
    Image.new("RGB", (8, 8)).save(image)
    for prog, argv in [
        ("hsvlt-predict", [broken, image]),
        ("hsvlt-train", [*ONE_STEP, "--model_name_or_path", broken, "--output_dir", tmp_path / "run"]),
    ]:
        refused(prog, argv, capsys, "config.json", "id2label[0]", repr(name))


# ---- also found: evaluating a list dataset needs no training list ---------------------------------------------------


@pytest.mark.slow
def test_eval_of_a_list_dataset_needs_no_training_list(trained_run, tmp_path, capsys):
    dataset = list_dataset(tmp_path / "data", DIGITS, [["one"], ["two", "three"], ["nine"]], train=False)
    code, out, err = run("hsvlt-eval", [trained_run, *dataset, "--quiet", "--num_workers", "0"], capsys)
    assert code == 0, err
    assert "mAP" in out


@pytest.mark.slow
def test_checkpoints_write_stages_inside_the_output_dir(trained_run, tmp_path, monkeypatch):
    """The staging directory of `write_checkpoint` is inside the output directory (its own filesystem)."""
    staged = []
    real_mkdtemp = checkpoints.tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        staged.append(Path(real_mkdtemp(*args, **kwargs)))
        return str(staged[-1])

    monkeypatch.setattr(checkpoints.tempfile, "mkdtemp", mkdtemp)
    model, processor = load_checkpoint(str(trained_run), "cpu")
    checkpoints.write_checkpoint(model, processor, tmp_path / "out")
    assert staged and staged[0].parent == tmp_path / "out" and not staged[0].exists()


def test_a_run_record_cut_by_a_kill_leaves_the_previous_one(tmp_path, monkeypatch):
    """A run killed while copying its record into a checkpoint (after `trainer_state.json`) must not leave a cut
    `run_record.json` that `--resume_from_checkpoint last` then fails to read."""
    from transformers_hsvlt.training import resume

    resume.write_run_record(str(tmp_path), {"model": {"seed": 1}})

    def cut_dump(record, file, **kwargs):
        file.write('{"model": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(resume.json, "dump", cut_dump)
    with pytest.raises(KeyboardInterrupt):
        resume.write_run_record(str(tmp_path), {"model": {"seed": 2}})
    monkeypatch.undo()
    resume.check_same_run(str(tmp_path), {"model": {"seed": 1}})  # the previous record, whole
