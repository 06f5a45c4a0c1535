"""`hsvlt-train --dataset hub --streaming`: training from a `datasets.IterableDataset`, on a local dataset streamed
through the same code path as a Hub one."""

import json

import pytest
from datasets import IterableDataset

from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.data import DataArguments, build_digit_canvases, load_training_data


@pytest.fixture(scope="module")
def saved_digits(tmp_path_factory):
    directory = tmp_path_factory.mktemp("streamed") / "digits"
    build_digit_canvases(40, 12, seed=3).save_to_disk(str(directory))
    return directory


def test_streamed_splits(saved_digits):
    data_args = DataArguments(dataset="hub", data_dir=str(saved_digits), eval_split="test", streaming=True)
    splits = load_training_data(data_args)
    assert isinstance(splits["train"], IterableDataset) and len(splits["eval"]) == 12
    first = next(iter(splits["train"]))
    assert set(first) == {"image", "labels"} and set(first["image"]) == {"bytes", "path"}  # decoded when read
    assert splits["eval"][0]["image"].size == (64, 64)
    assert splits["train"].features["labels"].feature.names[:3] == ["zero", "one", "two"]
    with pytest.raises(ValueError, match="--streaming works with --dataset hub, not --dataset digits"):
        DataArguments(streaming=True)


@pytest.mark.slow
def test_training_from_a_stream(saved_digits, tmp_path, capsys):
    output = tmp_path / "streamed-run"
    arguments = ["--dataset", "hub", "--data_dir", str(saved_digits), "--eval_split", "test", "--streaming",
                 "--preset", "tiny", "--random_label_embedding_size", "8", "--per_device_train_batch_size", "8",
                 "--output_dir", str(output), "--quiet"]  # fmt: skip
    assert train_cli.main(arguments) == 2
    assert "--streaming needs --max_steps" in capsys.readouterr().err
    assert train_cli.main([*arguments, "--max_steps", "3"]) == 0
    state = json.loads((output / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and any("eval_mAP" in entry for entry in state["log_history"])
    assert json.loads((output / "eval_results.json").read_text())["num_images"] == 12
