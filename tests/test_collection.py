"""Tagging a collection: `hsvlt-predict MODEL --input DIR_OR_LIST_OR_DATASET --output tags.jsonl|.parquet`, resumed
after a SIGKILL and split across 2 processes (see `transformers_hsvlt.collection`)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_config
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

from transformers_hsvlt import HSVLTForMultiLabelClassification
from transformers_hsvlt.checkpoints import load_checkpoint
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.collection import read_jsonl_rows
from transformers_hsvlt.images import load_image
from transformers_hsvlt.inference import predict


NAMES = ["cat", "dog", "person", "car", "tree"]  # the labels of conftest.tiny_config
PREDICT_MODULE = [sys.executable, "-m", "transformers_hsvlt.cli.predict"]
SUBPROCESS_TIMEOUT = 600


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("collection") / "checkpoint"
    torch.manual_seed(0)
    HSVLTForMultiLabelClassification(tiny_config()).save_pretrained(directory)
    return directory


def _write_images(directory, count: int, seed: int = 0) -> list[str]:
    """`count` random JPEGs in three nested folders; returns their absolute paths, sorted."""
    rng = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        folder = directory / f"part{number % 3}" / "nested"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"image{number:04d}.jpg"
        PILImage.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
        paths.append(str(path.resolve()))
    return sorted(paths)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 images, a file with an image suffix that is not an image, and a text file the walk must skip."""
    directory = tmp_path_factory.mktemp("folder")
    paths = _write_images(directory, 12)
    (directory / "part1" / "broken.png").write_bytes(b"not an image")
    (directory / "part2" / "notes.txt").write_text("not listed")
    return directory, paths, str((directory / "part1" / "broken.png").resolve())


def _tag(arguments, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = predict_cli.main([str(argument) for argument in arguments])
    return code, capsys.readouterr().err


def _rows(path) -> list[dict]:
    if str(path).endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    return list(read_jsonl_rows(path))


def test_a_folder_is_tagged_row_by_row_and_unreadable_files_are_listed_apart(checkpoint, folder, tmp_path, capsys):
    directory, paths, broken = folder
    output = tmp_path / "tags.jsonl"
    code, err = _tag(
        [checkpoint, "--input", directory, "--output", output, "--all_scores", "--batch_size", "5"], capsys
    )
    assert code == 1, err  # the broken file; the others are tagged
    assert f"1 unreadable image(s), listed in {output}.errors.jsonl" in err
    rows = _rows(output)
    assert [row["path"] for row in rows] == paths  # recursive, image suffixes only, sorted, once each
    errors = _rows(f"{output}.errors.jsonl")
    assert [error["path"] for error in errors] == [broken] and "not a recognised image file" in errors[0]["error"]
    assert not os.path.exists(f"{output}.parts")

    model, processor = load_checkpoint(str(checkpoint), "cpu")
    expected = predict(model, processor, [load_image(path) for path in paths], paths, threshold=None)  # every score
    for row, prediction in zip(rows, expected):
        scores = {label["label"]: label["score"] for label in prediction.labels}
        assert row["all_scores"] == pytest.approx(scores, abs=1e-5)
        above = [label["label"] for label in prediction.labels if label["score"] >= 0.5]  # most confident first
        assert row["labels"] == above and row["scores"] == pytest.approx([scores[name] for name in above], abs=1e-5)


@pytest.mark.slow
def test_list_files_and_datasets_give_the_rows_of_their_images(checkpoint, folder, tmp_path, capsys):
    """A list file (relative paths, any order, the authors' `path<TAB>labels` lines too) gives the folder's rows; a
    saved dataset, read or streamed, gives one row per row index, to JSON Lines or Parquet."""
    directory, paths, _ = folder
    reference = tmp_path / "folder.jsonl"
    _tag([checkpoint, "--input", directory, "--output", reference, "--all_scores"], capsys)
    by_path = {row["path"]: row for row in _rows(reference)}

    list_file = directory / "list.txt"
    relative = [os.path.relpath(path, directory) for path in reversed(paths)]
    list_file.write_text("\ufeff" + "\n".join(f"{path}\tcat,dog" if n % 2 else path for n, path in enumerate(relative)))
    output = tmp_path / "list.parquet"
    assert _tag([checkpoint, "--input", list_file, "--output", output, "--all_scores"], capsys)[0] == 0
    assert _rows(output) == _rows(reference)

    encoded = [{"bytes": open(path, "rb").read(), "path": os.path.basename(path)} for path in paths]
    features = Features({"picture": Image(), "caption": Value("string")})
    saved = tmp_path / "dataset"
    Dataset.from_dict({"picture": encoded, "caption": ["x"] * len(paths)}, features=features).save_to_disk(saved)
    for streaming in ([], ["--streaming"]):
        output = tmp_path / f"dataset{len(streaming)}.jsonl"
        arguments = [checkpoint, "--input", saved, "--image_column", "picture", "--output", output, *streaming]
        assert _tag(arguments, capsys)[0] == 0
        rows = _rows(output)
        assert [row["index"] for row in rows] == list(range(len(paths)))
        assert [row["path"] for row in rows] == [os.path.basename(path) for path in paths]
        for row, path in zip(rows, paths):
            assert row["labels"] == by_path[path]["labels"]
            assert row["scores"] == pytest.approx(by_path[path]["scores"], abs=1e-6)


@pytest.mark.slow
def test_the_checkpoints_label_thresholds_decide_when_present(checkpoint, folder, tmp_path, capsys):
    """`label_thresholds` in the config (one per label) decide unless --threshold is given (as in hsvlt-predict)."""
    directory, paths, _ = folder
    calibrated = tmp_path / "calibrated"
    model, processor = load_checkpoint(str(checkpoint), "cpu")
    model.config.label_thresholds = [1.0, 0.0, 1.0, 1.0, 1.0]  # only "dog", on every image
    model.save_pretrained(calibrated)
    processor.save_pretrained(calibrated)
    output = tmp_path / "tags.jsonl"
    assert _tag([calibrated, "--input", directory, "--output", output], capsys)[0] == 1
    assert {tuple(row["labels"]) for row in _rows(output)} == {("dog",)}
    given = tmp_path / "given.jsonl"
    assert _tag([calibrated, "--input", directory, "--output", given, "--threshold", "0.0"], capsys)[0] == 1
    assert {len(row["labels"]) for row in _rows(given)} == {5}


@pytest.mark.slow
def test_an_existing_output_is_kept_unless_resumed_or_overwritten(checkpoint, folder, tmp_path, capsys):
    directory, paths, _ = folder
    output = tmp_path / "tags.jsonl"
    output.write_text("mine\n")
    code, err = _tag([checkpoint, "--input", directory, "--output", output], capsys)
    assert code == 2 and "--resume" in err and "--overwrite_output_dir" in err
    assert output.read_text() == "mine\n"
    assert _tag([checkpoint, "--input", directory, "--output", output, "--overwrite_output_dir"], capsys)[0] == 1
    assert [row["path"] for row in _rows(output)] == paths
    resumed = _tag([checkpoint, "--input", directory, "--output", output, "--resume"], capsys)
    assert resumed[0] == 1 and "1/1" in resumed[1]  # only the unreadable file is tried again
    assert [row["path"] for row in _rows(output)] == paths
    before = output.read_bytes()
    code, err = _tag([checkpoint, "--input", directory, "--output", output, "--resume", "--threshold", "0.3"], capsys)
    assert code == 2 and "written by another run: threshold 'auto' (recorded) vs 0.3 (now)" in err
    assert output.read_bytes() == before


def test_resuming_a_finished_output_tags_only_the_new_images(checkpoint, tmp_path, capsys):
    """Images added to the folder after a finished run: `--resume` tags them only and merges them into the Parquet
    output, in path order."""
    directory = tmp_path / "images"
    first = _write_images(directory, 6)
    output = tmp_path / "tags.parquet"
    assert _tag([checkpoint, "--input", directory, "--output", output, "--batch_size", "4"], capsys)[0] == 0
    rows = _rows(output)
    added = directory / "part0" / "added.jpg"
    PILImage.fromarray(np.full((30, 30, 3), 90, dtype=np.uint8)).save(added)
    code, err = _tag([checkpoint, "--input", directory, "--output", output, "--batch_size", "4", "--resume"], capsys)
    assert code == 0 and "1/1" in err
    resumed = _rows(output)
    assert [row["path"] for row in resumed] == sorted([*first, str(added.resolve())])
    assert [row for row in resumed if row["path"] != str(added.resolve())] == rows


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["--input", "{folder}"], "--input needs --output"),
        (["--input", "{folder}", "--output", "tags.csv"], "--output must end with .jsonl or .parquet"),
        (["--input", "{folder}", "--output", "t.jsonl", "--resume", "--overwrite_output_dir"], "exclude each other"),
        (["image.jpg", "--input", "{folder}", "--output", "t.jsonl"], "drop the IMAGE arguments"),
        (["--input", "{folder}", "--output", "t.jsonl", "image.jpg"], "drop the IMAGE arguments"),
        (
            ["--input", "{folder}", "--output", "t.jsonl", "--unknown", "x"],
            "not used by the HfArgumentParser: ['--unknown']",
        ),
        (["image.jpg", "--output", "t.jsonl"], "--output needs --input"),
        ([], "give IMAGE arguments, or --input"),
        (["--input", "{empty}", "--output", "t.jsonl"], "no image file"),
        (["--input", "{folder}/dup.txt", "--output", "t.jsonl"], "is listed twice, on lines 1 and 3"),
        (["--input", "{folder}/none", "--input_type", "list", "--output", "t.jsonl"], "no such list file"),
        (["--input", "org/none", "--output", "t.jsonl"], "not a folder, list file or loadable dataset"),
        (["--input", "{folder}/dataset", "--image_column", "photo", "--output", "t.jsonl"], "no image column 'photo'"),
    ],
)
def test_bad_collection_arguments_are_one_line_errors(arguments, fragment, checkpoint, folder, tmp_path, capsys):
    directory = folder[0]
    (directory / "dup.txt").write_text("part0/nested/image0000.jpg\nother.jpg\n./part0/nested/image0000.jpg\n")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    if not (directory / "dataset").exists():
        Dataset.from_dict({"image": [None]}, features=Features({"image": Image()})).save_to_disk(directory / "dataset")
    replacements = {"{folder}": str(directory), "{empty}": str(tmp_path / "empty")}
    for placeholder, value in replacements.items():
        arguments = [argument.replace(placeholder, value) for argument in arguments]
    arguments = [
        str(tmp_path / argument) if argument.endswith((".jsonl", ".csv")) else argument for argument in arguments
    ]
    code, err = _tag([checkpoint, *arguments], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("hsvlt-predict: error: ") and fragment in lines[0]
    assert not list(tmp_path.glob("t.jsonl*"))  # nothing written


# ---- subprocesses: SIGKILL and two processes --------------------------------------------------------------------


def _environment() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _run(command: list) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


@pytest.mark.slow
def test_a_killed_run_resumes_without_duplicate_or_missing_rows(checkpoint, tmp_path):
    """SIGKILL once some rows are written, a row cut short by the kill simulated at the end of a part, then --resume:
    every image has exactly one row, with the scores of an uninterrupted run."""
    directory = tmp_path / "images"
    paths = _write_images(directory, 240)
    tagging = [*PREDICT_MODULE, checkpoint, "--input", directory, "--batch_size", "4", "--num_workers", "1"]
    reference = tmp_path / "reference.jsonl"
    assert _run([*tagging, "--output", reference, "--threads", "1"]).returncode == 0

    output = tmp_path / "tags.jsonl"
    parts = tmp_path / "tags.jsonl.parts"
    process = subprocess.Popen(
        [str(part) for part in [*tagging, "--output", output, "--threads", "1"]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_environment(),
    )
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while sum(len(path.read_text().splitlines()) for path in parts.glob("*.rows.jsonl")) < 20:
            assert process.poll() is None, "the run to interrupt ended before writing 20 rows"
            assert time.monotonic() < deadline, "no 20 rows in time"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL and not output.exists()
    (part,) = parts.glob("*.rows.jsonl")
    written = list(read_jsonl_rows(part))
    assert 20 <= len(written) < len(paths)
    with open(part, "a") as handle:
        handle.write(json.dumps({"path": paths[-1], "labels": []})[:25])  # a row the kill cut short

    resumed = _run([*tagging, "--output", output, "--resume", "--threads", "1"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(paths) - len(written)}/{len(paths) - len(written)}" in resumed.stderr  # the rest only
    rows, expected = _rows(output), _rows(reference)
    assert [row["path"] for row in rows] == paths
    for row, other in zip(rows, expected):
        assert row["labels"] == other["labels"] and row["scores"] == pytest.approx(other["scores"], abs=1e-5)
    assert not parts.exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_the_output_of_one(checkpoint, folder, tmp_path):
    """`accelerate launch` of 2 CPU processes (gloo): each tags every other batch into its own part; process 0 merges
    them into a file identical, byte for byte, to the single-process output, errors file included."""
    directory, paths, _ = folder
    tagging = [checkpoint, "--input", directory, "--batch_size", "2", "--all_scores", "--threads", "1"]
    single = _run([*PREDICT_MODULE, *tagging, "--output", tmp_path / "one" / "tags.jsonl"])
    assert single.returncode == 1, single.stderr[-2000:]  # the unreadable file
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", _free_port()]  # fmt: skip
    double = _run(
        [*launcher, "-m", "transformers_hsvlt.cli.predict", *tagging, "--output", tmp_path / "two" / "tags.jsonl"]
    )
    assert double.returncode != 0 and "1 unreadable image(s)" in double.stderr
    # 13 files in batches of 2: process 0 takes batches 0, 2, 4, 6 (7 files), process 1 the other 6
    assert "7/7" in double.stderr and "13/13" not in double.stderr
    for name in ("tags.jsonl", "tags.jsonl.errors.jsonl"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert len(_rows(tmp_path / "two" / "tags.jsonl")) == len(paths)


def test_image_arguments_may_still_follow_options(checkpoint, folder, capsys):
    """IMAGE is optional since `--input` needs none: images after options are still predicted (and printed)."""
    paths = folder[1]
    code = predict_cli.main([str(checkpoint), "--threshold", "0", paths[0], "--top_k", "1", paths[1], "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and [entry["image"] for entry in printed] == paths[:2]
    assert all(len(entry["predictions"]) == 1 for entry in printed)
