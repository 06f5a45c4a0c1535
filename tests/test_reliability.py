"""Reliability: a killed training run resumes as if never interrupted, two processes train like one, bad inputs give
clear errors naming what is wrong, and untrusted weight files are never unpickled.

Covered by other files and not repeated here: image loading errors (missing, empty, corrupt, truncated files, URLs)
and the decompression-bomb pixel limit `images.DEFAULT_MAX_IMAGE_PIXELS` in tests/test_images.py
(test_decompression_bomb_*, test_default_limit_is_twice_pillows); dataset builders' errors naming file and line in
tests/test_data_builders.py; the model's label-set checks in tests/test_modeling.py
(test_set_label_embeddings_rejects_bad_input); `.pth` conversion with `torch.load(weights_only=True)` refusing
pickled code in tests/test_conversion.py (test_pickled_code_is_refused_and_not_run); remote code needing
`trust_remote_code=True` in tests/test_remote_code.py; `hsvlt-predict` with an unreadable image in
tests/test_training.py.
"""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import tiny_config
from datasets import Dataset
from PIL import Image
from safetensors.torch import load_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.multiprocessing import spawn
from transformers import BertConfig, BertModel, TrainingArguments

from transformers_hsvlt import HSVLTForMultiLabelClassification
from transformers_hsvlt.checkpoints import load_checkpoint
from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.data import DIGIT_CLASS_NAMES, multilabel_features
from transformers_hsvlt.distributed import leave_process_group
from transformers_hsvlt.evaluation import evaluate_split
from transformers_hsvlt.images import ImageLoadError
from transformers_hsvlt.modeling_hsvlt_encoder import HSVLTLayer
from transformers_hsvlt.training import parse_train_arguments, resolve_resume_checkpoint
from transformers_hsvlt.training import resume as training_module


TINY_RUN = [
    "--digits_train_size", "48",
    "--digits_test_size", "16",
    "--random_label_embedding_size", "16",
    "--dataloader_num_workers", "0",
    "--disable_tqdm", "true",
    "--eval_strategy", "no",
    "--load_best_model_at_end", "false",
    "--logging_strategy", "steps",
    "--logging_steps", "1",
    "--threads", "1",  # as `_environment`: hsvlt-train's default (auto, the idle CPUs) would vary between the runs
]  # fmt: skip
TRAIN_MODULE = [sys.executable, "-m", "transformers_hsvlt.cli.train"]
SUBPROCESS_TIMEOUT = 600


def _environment() -> dict:
    """One thread per process (2 busy cores; the compared runs then also reduce in the same order) and offline."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, capture_output=True, text=True, env=_environment(), timeout=SUBPROCESS_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stderr[-4000:]}"
    return result


def _state(checkpoint) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def _step_logs(checkpoint) -> list[dict]:
    return [entry for entry in _state(checkpoint)["log_history"] if "loss" in entry]


def _max_relative_difference(first: dict, second: dict) -> float:
    """Largest |a - b| over all tensors, relative to the largest |a| of the same tensor."""
    assert first.keys() == second.keys()
    return max(
        ((first[key] - second[key]).abs().max() / first[key].abs().max().clamp_min(1e-30)).item()
        for key in first
        if first[key].is_floating_point()
    )


def _optimizer_moments(checkpoint) -> dict:
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]
    return {f"{index}.{name}": values[name] for index, values in state.items() for name in ("exp_avg", "exp_avg_sq")}


# ---- interrupted training ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_run_resumes_like_an_uninterrupted_run(tmp_path):
    """48 images in batches of 8 are 6 steps per epoch; 12 steps with a checkpoint every 2. The run is SIGKILLed once
    checkpoint-4 (mid-epoch) is complete, a checkpoint-6 left half-written by the kill is simulated, and
    `--resume_from_checkpoint last` must skip it, resume from checkpoint-4 (skipping the 4 batches already seen of
    epoch 1) and end exactly where an uninterrupted run with the same seed ends."""
    # --warmup_epochs 1: a warm-up of 6 steps, still running at the kill
    arguments = [*TINY_RUN, "--per_device_train_batch_size", "8", "--max_steps", "12",
                 "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "10",
                 "--warmup_epochs", "1"]  # fmt: skip
    _, _, _, resumed_args = parse_train_arguments([*arguments, "--resume_from_checkpoint", "last"])
    assert resumed_args.ignore_data_skip is False  # Trainer fast-forwards the data loader past the seen batches

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    _run([*TRAIN_MODULE, *arguments, "--output_dir", str(uninterrupted)])

    process = subprocess.Popen(
        [*TRAIN_MODULE, *arguments, "--output_dir", str(interrupted)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_environment(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while not (interrupted / "checkpoint-4" / "trainer_state.json").exists():  # written last
            assert process.poll() is None, "the run to interrupt ended before writing checkpoint-4"
            assert time.monotonic() < deadline, "no checkpoint-4 in time"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (interrupted / "model.safetensors").exists()  # killed before the end of training
    # Whatever the kill interrupted after checkpoint-4, make it a checkpoint-6 killed while writing its weights.
    for later in interrupted.glob("checkpoint-*"):
        if int(later.name.split("-")[1]) > 4:
            shutil.rmtree(later)
    half_written = interrupted / "checkpoint-6"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(
        (interrupted / "checkpoint-4" / "model.safetensors").read_bytes()[:999]
    )

    resumed = _run([*TRAIN_MODULE, *arguments, "--output_dir", str(interrupted), "--resume_from_checkpoint", "last"])
    assert "Skipping the incomplete checkpoint" in resumed.stderr and "checkpoint-6" in resumed.stderr

    expected, got = uninterrupted / "checkpoint-12", interrupted / "checkpoint-12"
    assert _state(expected)["global_step"] == _state(got)["global_step"] == 12
    expected_logs, got_logs = _step_logs(expected), _step_logs(got)
    assert [entry["step"] for entry in got_logs] == list(range(1, 13))
    # steps 5-12 ran after the resume: the same losses mean the same batches in the same order (data order continued,
    # across the epoch boundary at step 6), the same learning rates mean the warm-up (6 steps) continued
    for expected_entry, got_entry in zip(expected_logs, got_logs):
        assert got_entry["loss"] == pytest.approx(expected_entry["loss"], rel=1e-6)
        assert got_entry["learning_rate"] == pytest.approx(expected_entry["learning_rate"], rel=1e-9)
    assert [entry["learning_rate"] for entry in got_logs[:6]] == pytest.approx(
        [1e-3 * step / 6 for step in range(1, 7)]
    )
    scheduler_states = [torch.load(checkpoint / "scheduler.pt", weights_only=True) for checkpoint in (expected, got)]
    assert scheduler_states[0] == scheduler_states[1]  # step count, warm-up and plateau state
    # measured: bit-identical (0.0); 1e-6 leaves room for another summation order only
    assert _max_relative_difference(_optimizer_moments(expected), _optimizer_moments(got)) <= 1e-6
    for expected_dir, got_dir in ((expected, got), (uninterrupted, interrupted)):
        weights = [load_file(directory / "model.safetensors") for directory in (expected_dir, got_dir)]
        assert _max_relative_difference(*weights) <= 1e-6


def _fake_checkpoint(directory, *, state="{}", weights=True, optimizer=True):
    directory.mkdir(parents=True)
    if state is not None:
        (directory / "trainer_state.json").write_text(state)
    if weights:
        (directory / "model.safetensors").write_bytes(b"weights")
    if optimizer:
        (directory / "optimizer.pt").write_bytes(b"optimizer")


def test_resume_last_picks_the_newest_complete_checkpoint(tmp_path, monkeypatch, capsys):
    warnings = []
    monkeypatch.setattr(training_module.logger, "warning", warnings.append)
    _fake_checkpoint(tmp_path / "checkpoint-9")
    _fake_checkpoint(tmp_path / "checkpoint-10")  # newer than checkpoint-9 by number, not by name
    _fake_checkpoint(tmp_path / "checkpoint-12", state=None)
    _fake_checkpoint(tmp_path / "checkpoint-14", state='{"global_step": 1')  # truncated while written
    _fake_checkpoint(tmp_path / "checkpoint-16", optimizer=False)
    _fake_checkpoint(tmp_path / "checkpoint-18", weights=False)
    (tmp_path / "checkpoint-20.tmp").mkdir()
    arguments = TrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="last", report_to="none")
    assert resolve_resume_checkpoint(arguments) == str(tmp_path / "checkpoint-10")
    assert [message.split(":")[0].rsplit("-", 1)[1] for message in warnings] == ["18", "16", "14", "12"]
    assert "model weights" in warnings[0] and "optimizer.pt" in warnings[1]
    assert "a readable trainer_state.json" in warnings[2] and "lacks trainer_state.json" in warnings[3]

    arguments = TrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="last", report_to="none",
                                  save_only_model=True)  # fmt: skip
    assert resolve_resume_checkpoint(arguments) == str(tmp_path / "checkpoint-16")  # no optimizer.pt needed

    named = TrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "checkpoint-12"))
    with pytest.raises(ValueError, match="checkpoint-12: incomplete checkpoint, it lacks trainer_state.json"):
        resolve_resume_checkpoint(named)

    only_incomplete = tmp_path / "only-incomplete"
    _fake_checkpoint(only_incomplete / "checkpoint-2", weights=False)
    assert train_cli.main(["--output_dir", str(only_incomplete), "--resume_from_checkpoint", "last"]) == 2
    assert f"no complete checkpoint-* directory in {only_incomplete}" in capsys.readouterr().err


# ---- multi-process training -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _first_moment(checkpoint) -> torch.Tensor:
    moments = _optimizer_moments(checkpoint)
    return torch.cat([moment.flatten() for key, moment in moments.items() if key.endswith(".exp_avg")])


def _run_two_machines(train_arguments: list[str]) -> list[str]:
    """Two "machines" on this host: `accelerate launch --num_machines 2 --machine_rank 0|1 --main_process_ip
    127.0.0.1`, one CPU process each (gloo), as the README's multi-node recipe; their outputs."""
    port = str(_free_port())
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                "--num_processes",
                "2",
                "--num_machines",
                "2",
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                port,
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                "-m",
                "transformers_hsvlt.cli.train",
                *train_arguments,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_environment(),
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [launcher.communicate(timeout=SUBPROCESS_TIMEOUT)[0] for launcher in launchers]
    for rank, (launcher, output) in enumerate(zip(launchers, outputs)):
        assert launcher.returncode == 0, f"machine {rank} failed:\n{output[-4000:]}"
    return outputs


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one(tmp_path):
    """`accelerate launch` of 2 CPU processes (gloo DDP) on one machine and of 1 process on each of 2 "machines",
    batch 4 each, against one process with batch 8 and one with 2 accumulated batches of 4: each optimiser step sees
    the same 8 images (the sampler's permutation is seeded by --seed; process i takes batches i, i+2, ...) and DDP
    averages the two batch-mean gradients. The 2-process run also checkpoints activations: DDP must still look for
    unused parameters (the last block's label gate gets no gradient), or the second step fails. Every launcher must
    end with 0: a process leaving its gloo group while a worker thread still frees the last collective's tensors
    used to abort now and then (`FamilyTrainer.end`). On CPU, accelerate runs `--fsdp` as DDP (its FSDP needs
    GPUs), and the two machines' run asks for it: it says so and takes DDP's steps. Sharding is tested below, with
    FSDP2 itself."""
    two_steps = [*TINY_RUN, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--use_cpu", "true"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(_free_port())]  # fmt: skip
    runs = {name: tmp_path / name for name in ("two_processes", "two_machines", "one_process", "accumulated")}
    _run([*launcher, "-m", "transformers_hsvlt.cli.train", *two_steps, "--per_device_train_batch_size", "4",
          "--gradient_checkpointing", "true", "--output_dir", str(runs["two_processes"])])  # fmt: skip
    outputs = _run_two_machines([*two_steps, "--per_device_train_batch_size", "4", "--output_dir",
                                 str(runs["two_machines"]), "--fsdp", "full_shard"])  # fmt: skip
    assert all("--fsdp is ignored on CPU" in output for output in outputs)  # and the steps are DDP's, below
    _run([*TRAIN_MODULE, *two_steps, "--per_device_train_batch_size", "8", "--output_dir", str(runs["one_process"])])
    _run([*TRAIN_MODULE, *two_steps, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
          "--output_dir", str(runs["accumulated"])])  # fmt: skip

    assert _state(runs["two_processes"] / "checkpoint-1")["epoch"] == pytest.approx(1 / 6)  # 48 / (2 x 4): sharded
    for step in ("checkpoint-1", "checkpoint-2"):
        reference = runs["one_process"] / step
        reference_log = _step_logs(reference)[-1]
        reference_weights = load_file(reference / "model.safetensors")
        gradient = _first_moment(reference)
        for name in ("two_processes", "two_machines", "accumulated"):
            checkpoint = runs[name] / step
            log = _step_logs(checkpoint)[-1]
            assert log["loss"] == pytest.approx(reference_log["loss"], rel=1e-5), name  # not multiplied by 2
            assert log["grad_norm"] == pytest.approx(reference_log["grad_norm"], rel=1e-5), name
            other = _first_moment(checkpoint)  # Adam's first moment, a running mean of the (averaged) gradients
            assert ((other - gradient).norm() / gradient.norm()).item() < 1e-6, (name, step)  # measured < 1e-7
            weights = load_file(checkpoint / "model.safetensors")
            for key, value in reference_weights.items():
                # a step moves weights by ~lr = 1.7e-4; Adam's normalised step amplifies the summation-order noise
                # of gradients near its eps: measured max |difference| 3.5e-7 (one weight of 18,432; 1.9e-8 before
                # IVLA's documented initialisation ran), tolerance 1e-6 (< 1% of a step)
                torch.testing.assert_close(
                    weights[key], value, rtol=1e-6, atol=1e-6, msg=lambda text, n=name, k=key: f"{n} {k}: {text}"
                )
    model = HSVLTForMultiLabelClassification.from_pretrained(runs["two_processes"])
    assert list(model.config.id2label.values()) == list(DIGIT_CLASS_NAMES)
    HSVLTForMultiLabelClassification.from_pretrained(runs["two_processes"] / "checkpoint-2")


def _sharded_gradients(rank: int, init_file: str, output: str) -> None:
    """One of 2 CPU processes (gloo) of an FSDP2 training step, sharded as accelerate shards on GPUs (`fully_shard` on
    each `HSVLTLayer`, then on the model): this process's half of the batch; process 0 saves the full gradients."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        mesh = init_device_mesh("cpu", (2,))
        model = _seeded_model()
        for layer in [module for module in model.modules() if isinstance(module, HSVLTLayer)]:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        pixel_values, labels = _batch_of_four()
        half = slice(2 * rank, 2 * rank + 2)
        model(pixel_values=pixel_values[half], labels=labels[half]).loss.backward()
        gradients = {name: _full(parameter.grad) for name, parameter in model.named_parameters()}
        if rank == 0:
            torch.save(gradients, output)
    finally:
        leave_process_group()  # `full_tensor` all-gathered


def _seeded_model() -> HSVLTForMultiLabelClassification:
    torch.manual_seed(0)
    return HSVLTForMultiLabelClassification(tiny_config())


def _batch_of_four() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 64, 64, generator=generator), (torch.rand(4, 5, generator=generator) > 0.5).float()


def _full(gradient):
    return None if gradient is None else gradient.full_tensor()


@pytest.mark.slow
def test_fsdp2_sharded_step_has_the_gradients_of_one_process(tmp_path):
    """FSDP2 on 2 CPU processes (what `--fsdp full_shard` with `HSVLTLayer` as the unit runs on GPUs): the
    all-gathered parameters, the hand-written label-update backward and the reduce-scattered (averaged) gradients
    give one process's gradients of the whole batch; the same parameters get none (the last block's label gate)."""
    output = tmp_path / "gradients.pt"
    spawn(_sharded_gradients, args=(str(tmp_path / "rendezvous"), str(output)), nprocs=2)
    sharded = torch.load(output)
    model = _seeded_model()
    pixel_values, labels = _batch_of_four()
    model(pixel_values=pixel_values, labels=labels).loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            assert sharded[name] is None, name
            continue
        scale = parameter.grad.abs().max()
        # summation order differs (two half-batch means, then their average): measured max 1.3e-6 of the largest
        torch.testing.assert_close(sharded[name], parameter.grad, rtol=0, atol=1e-5 * scale, msg=name)
    assert sum(gradient is not None for gradient in sharded.values()) > 100


@pytest.mark.slow
def test_training_leaves_the_process_group(tmp_path):
    """`hsvlt-train` destroys the distributed group when training ends (what follows runs in process 0 alone): a
    process exiting with a live gloo group can abort."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert train_cli.main([*TINY_RUN, "--max_steps", "1", "--output_dir", str(tmp_path / "run")]) == 0
        assert not dist.is_initialized()
    finally:
        leave_process_group()


def test_processes_launched_without_distributed_setup_are_refused(monkeypatch, tmp_path, capsys):
    """`accelerate launch --multi_gpu` or `torchrun` on a machine without GPUs and without --use_cpu true: each process
    would train alone on everything and write the same output directory."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train_cli.main(["--output_dir", str(tmp_path), "--max_steps", "1"]) == 2
    error = capsys.readouterr().err
    assert "launched as 2 processes" in error and "--use_cpu true" in error


# ---- bad input end to end ---------------------------------------------------------------------------------------


def _error_line(stderr: str, prefix: str) -> str:
    """The one line of `stderr` (progress bars aside) that starts with `prefix`."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr
    return lines[0]


CLASSES = ["cat", "dog", "person", "car", "tree"]  # the labels of conftest.tiny_config


@pytest.fixture
def hsvlt_checkpoint(tmp_path):
    directory = tmp_path / "hsvlt"
    HSVLTForMultiLabelClassification(tiny_config()).save_pretrained(directory)
    return directory


def _write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "labels"])
        writer.writerows(rows)
    return path


@pytest.fixture
def image_rows(tmp_path):
    """Six readable images labelled with every class at least once."""
    rng = np.random.default_rng(0)
    labels = ["cat,dog", "person", "car,tree", "cat", "dog,person", "tree"]
    rows = []
    for index, label in enumerate(labels):
        path = tmp_path / f"image{index}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
        rows.append((path.name, label))
    return rows


def _eval_arguments(checkpoint, data, *extra):
    return [str(checkpoint), "--dataset", "custom", "--data_dir", str(data), "--train_split", "train",
            "--eval_split", "train", "--batch_size", "4", *extra]  # fmt: skip


@pytest.mark.slow
def test_eval_stops_at_a_corrupt_image_or_skips_it_on_request(hsvlt_checkpoint, image_rows, tmp_path, capsys):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but then not a PNG")
    rows = [*image_rows[:3], ("corrupt.png", "dog"), *image_rows[3:]]
    data, clean = _write_csv(tmp_path / "data.csv", rows), _write_csv(tmp_path / "clean.csv", image_rows)
    corrupt = str(tmp_path / "corrupt.png")

    assert eval_cli.main(_eval_arguments(hsvlt_checkpoint, data)) == 2
    captured = capsys.readouterr()
    assert corrupt in _error_line(captured.err, "hsvlt-eval: error: Cannot load image")
    assert "Traceback" not in captured.err and "mAP" not in captured.out

    report = tmp_path / "report.json"
    assert eval_cli.main(_eval_arguments(hsvlt_checkpoint, data, "--skip_bad_images", "--json", str(report))) == 0
    captured = capsys.readouterr()
    assert "mAP:" in captured.out
    assert "skipped 1 unreadable image(s):" in captured.err and corrupt in captured.err.split("skipped")[1]
    results = json.loads(report.read_text())
    assert results["num_images"] == 6 and [entry["path"] for entry in results["skipped"]] == [corrupt]
    assert eval_cli.main(_eval_arguments(hsvlt_checkpoint, clean, "--json", str(tmp_path / "clean.json"))) == 0
    clean_results = json.loads((tmp_path / "clean.json").read_text())
    assert results["mAP"] == pytest.approx(clean_results["mAP"], abs=1e-9)  # metrics over the readable images only
    assert results["per_class_AP"] == pytest.approx(clean_results["per_class_AP"], abs=1e-9)


def test_eval_reads_embedded_bytes_before_the_file_name(hsvlt_checkpoint, image_rows, tmp_path):
    """Hub datasets (parquet) store each image's bytes with only its original file name as `path`."""
    encoded = [{"bytes": (tmp_path / name).read_bytes(), "path": name} for name, _ in image_rows]
    encoded[2] = {"bytes": b"garbage", "path": "broken.jpg"}
    labels = [[CLASSES.index(label) for label in names.split(",")] for _, names in image_rows]
    split = Dataset.from_dict({"image": encoded, "labels": labels}, features=multilabel_features(CLASSES))
    model, processor = load_checkpoint(str(hsvlt_checkpoint), "cpu")
    with pytest.raises(ImageLoadError, match=r"^broken\.jpg: Cannot load image <7 bytes>"):
        evaluate_split(model, processor, split, batch_size=4, show_progress=False)
    result = evaluate_split(model, processor, split, batch_size=4, skip_bad_images=True, show_progress=False)
    assert [path for path, _ in result.skipped] == ["broken.jpg"] and 0 <= result.metrics["mAP"] <= 100


def _custom_training(data, output_dir, *extra):
    return ["--dataset", "custom", "--data_dir", str(data), "--train_split", "train", "--eval_split", "train",
            "--preset", "tiny", "--max_steps", "1", "--per_device_train_batch_size", "8", "--eval_strategy", "no",
            "--load_best_model_at_end", "false", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
            "--random_label_embedding_size", "8", "--output_dir", str(output_dir), *extra]  # fmt: skip


@pytest.mark.parametrize("problem, workers", [("missing", "0"), ("corrupt", "0"), ("corrupt", "2")])
@pytest.mark.slow
def test_training_on_an_unreadable_image_names_the_file(problem, workers, image_rows, tmp_path, capsys):
    """A missing image is found when the dataset is built, a corrupt one when its batch is loaded (in the main process
    or in a data-loader worker): both stop hsvlt-train with exit status 2 and one line naming the file."""
    if problem == "corrupt":
        (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated JPEG")
    data = _write_csv(tmp_path / "data.csv", [*image_rows, ("bad.jpg", "cat")])
    assert train_cli.main(_custom_training(data, tmp_path / "run", "--dataloader_num_workers", workers)) == 2
    error = capsys.readouterr().err
    line = _error_line(error, "hsvlt-train: error: ")
    assert str(tmp_path / "bad.jpg") in line and "Traceback" not in error
    assert ("do not exist" if problem == "missing" else "Cannot load image") in line
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.fixture
def digits_checkpoint(tmp_path):
    """An HSVLT for the digit classes with 16-d label embeddings."""
    directory = tmp_path / "digits-model"
    config = tiny_config(id2label=dict(enumerate(DIGIT_CLASS_NAMES)), label_embedding_size=16)
    HSVLTForMultiLabelClassification(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("rows", ["expected label embeddings of shape (10, any) (num_labels, width), got (7, 16)"]),
        ("nan", ["NaN or inf", "rows of labels [3]"]),
        ("checkpoint_width", ["expected label embeddings of shape (10, 16) (num_labels, width), got (10, 24)"]),
        ("checkpoint_rows", ["expected label embeddings of shape (10, 16) (num_labels, width), got (12, 16)"]),
        ("checkpoint_head", ["does not fit", "config.json", "classifier.weight (10, 80) vs expected (3, 80)"]),
    ],
)
@pytest.mark.slow
def test_label_count_and_width_mismatches_exit_2(case, fragments, digits_checkpoint, tmp_path, capsys):
    """Label embeddings (.npy), the config's labels and the checkpoint's head must agree: `hsvlt-train` exits 2 with
    a message naming the file and the shapes before training starts."""
    embeddings = tmp_path / "labels.npy"
    shape = {"rows": (7, 16), "checkpoint_width": (10, 24), "checkpoint_rows": (12, 16)}.get(case, (10, 16))
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if case == "nan":
        array[3, 5] = np.nan
    np.save(embeddings, array)
    arguments = [*TINY_RUN, "--max_steps", "1", "--output_dir", str(tmp_path / "run")]
    named = embeddings
    if case.startswith("checkpoint"):
        arguments += ["--model_name_or_path", str(digits_checkpoint)]
    if case == "checkpoint_head":  # config.json lists 3 labels, the saved head has 10 rows
        config = json.loads((digits_checkpoint / "config.json").read_text())
        config["id2label"] = {str(index): name for index, name in enumerate(DIGIT_CLASS_NAMES[:3])}
        config["label2id"] = {name: index for index, name in enumerate(DIGIT_CLASS_NAMES[:3])}
        (digits_checkpoint / "config.json").write_text(json.dumps(config))
        named = digits_checkpoint
    else:
        arguments += ["--label_embeddings", str(embeddings)]
    assert train_cli.main(arguments) == 2
    error = capsys.readouterr().err
    line = _error_line(error, "hsvlt-train: error: ")
    assert str(named) in line and "Traceback" not in error
    for fragment in fragments:
        assert fragment in line
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.slow
def test_predict_and_eval_refuse_checkpoints_of_other_architectures(tmp_path, capsys):
    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(bert)  # fmt: skip
    assert predict_cli.main([str(bert), "image.png"]) == 2
    assert f"{bert} is a checkpoint of model_type 'bert': unknown architecture 'bert'" in capsys.readouterr().err
    assert eval_cli.main([str(bert), "--digits_test_size", "4"]) == 2
    assert "model_type 'bert'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert predict_cli.main([str(empty), "image.png"]) == 2
    error = capsys.readouterr().err
    assert "config.json" in _error_line(error, "hsvlt-predict: error: ") and "Traceback" not in error


# ---- untrusted files --------------------------------------------------------------------------------------------


class CreatesAFileWhenUnpickled:
    """A pickle payload: unpickling it calls `open(path, "w")`, which creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _pickle_only_checkpoint(directory, state_dict):
    HSVLTForMultiLabelClassification(tiny_config()).save_pretrained(directory)
    (directory / "model.safetensors").unlink()
    torch.save(state_dict, directory / "pytorch_model.bin")
    return directory


def test_pickled_weights_are_refused_with_a_clear_message(tmp_path, capsys):
    checkpoint = _pickle_only_checkpoint(
        tmp_path / "bin-only", HSVLTForMultiLabelClassification(tiny_config()).state_dict()
    )
    with pytest.raises(
        ValueError, match=r"holds its weights only as pytorch_model\.bin, a pickle, and no model\.safetensors"
    ):
        load_checkpoint(str(checkpoint), "cpu")
    assert predict_cli.main([str(checkpoint), "image.png"]) == 2
    assert "weights are loaded from safetensors only" in capsys.readouterr().err


@pytest.mark.slow
def test_malicious_pickle_is_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    checkpoint = _pickle_only_checkpoint(tmp_path / "evil", {"weight": CreatesAFileWhenUnpickled(marker)})
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(str(checkpoint), "cpu")
    assert predict_cli.main([str(checkpoint), "image.png"]) == 2
    assert eval_cli.main([str(checkpoint), "--dataset", "digits", "--digits_test_size", "4"]) == 2
    assert (
        train_cli.main([*TINY_RUN, "--model_name_or_path", str(checkpoint), "--output_dir", str(tmp_path / "run")]) == 2
    )
    assert capsys.readouterr().err.count("a pickle") == 3
    assert not marker.exists()
    torch.load(checkpoint / "pytorch_model.bin", weights_only=False)  # what a plain torch.load would have done
    assert marker.exists()
