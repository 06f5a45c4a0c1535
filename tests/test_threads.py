"""`--threads`: one implementation (`transformers_hsvlt.threads.set_threads`) behind hsvlt-train, -eval and -predict."""

import os

import pytest
import torch

from transformers_hsvlt import threads
from transformers_hsvlt.cli import evaluate, predict, train
from transformers_hsvlt.cli.common import RuntimeArguments
from transformers_hsvlt.training import parse_train_arguments


@pytest.mark.parametrize("idle, processes, expected", [(2, 1, 2), (1, 1, 1), (4, 2, 2), (1, 2, 1)])
def test_auto_takes_the_idle_cpus_shared_by_the_processes(monkeypatch, idle, processes, expected):
    monkeypatch.setattr(threads, "idle_cpus", lambda: idle)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    assert threads.set_threads("auto") == expected == torch.get_num_threads()


def test_idle_cpus_is_between_one_and_the_cpu_count():
    assert 1 <= threads.idle_cpus(sample_seconds=0.05) <= torch.multiprocessing.cpu_count()


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_bad_thread_counts_are_refused(value):
    with pytest.raises(ValueError, match="--threads must be auto or a number from 1 to"):
        threads.set_threads(value)


def test_train_uses_auto_threads_by_default_like_predict_and_eval():
    """The three commands share `RuntimeArguments` (its `--threads` default: auto)."""
    _, _, output_args, _ = parse_train_arguments([])
    assert isinstance(output_args, RuntimeArguments) and output_args.threads == "auto"
    for command in (predict, evaluate):
        assert RuntimeArguments in command.build_parser().dataclass_types


@pytest.mark.parametrize("processes, expected", [(None, 3), ("2", 1)])
def test_hsvlt_train_sets_the_threads_before_training(monkeypatch, capsys, processes, expected):
    """`hsvlt-train --threads auto` with 3 idle CPUs trains on 3 threads, each of 2 launched processes on 1, and says
    how many (the same seed trains the same model only on as many threads)."""
    monkeypatch.setattr(threads, "idle_cpus", lambda: 3)
    if processes:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    seen = []
    monkeypatch.setattr(train, "train", lambda *arguments: seen.append(torch.get_num_threads()))
    torch.set_num_threads(1 if expected != 1 else 2)
    assert train.main(["--threads", "auto"]) == 0
    assert seen == [expected]
    assert capsys.readouterr().out.startswith(f"hsvlt-train: {expected} CPU thread(s) (--threads auto);")


def test_hsvlt_train_refuses_bad_threads_in_one_line(capsys):
    assert train.main(["--threads", "many"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"hsvlt-train: error: --threads must be auto or a number from 1 to {os.cpu_count()} (this machine's CPUs), "
        "got 'many'."
    )
