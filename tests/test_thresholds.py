"""Issue 20, items 1-3: calibrated per-label thresholds.

The threshold-choosing strategies against hand-computed cases; `label_thresholds` validated in every family config;
the thresholds used wherever labels are decided (`post_process_multi_label`, the pipeline and its `candidate_labels`,
`hsvlt-predict`, the demo); `hsvlt-calibrate` and `hsvlt-eval` through the real commands on a tiny model trained on
the digits default, and on a custom dataset, where thresholds calibrated on a validation split beat the 0.5 rule in
CF1 on the held-out test split.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from clip_fixtures import NAMES, clip_image_processor, tiny_model, tiny_tokenizer
from conftest import tiny_config as conftest_tiny_config
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from transformers import pipeline

from transformers_hsvlt import (
    HSVLTConfig,
    HSVLTForMultiLabelClassification,
    MSRNConfig,
    MultiLabelImageProcessor,
    PatchCTConfig,
    PatchCTForMultiLabelClassification,
    PVLRConfig,
    checkpoints,
)
from transformers_hsvlt.cli import calibrate as calibrate_cli
from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.data import DIGIT_CLASS_NAMES, build_digit_canvases
from transformers_hsvlt.evaluation.thresholds import calibrate_thresholds, f1_threshold, global_threshold
from transformers_hsvlt.hub import prepare_for_push


# ---- the strategies, by hand -------------------------------------------------------------------------------------

# 4 images, 2 labels. Distinct scores, decreasing: 0.9 0.8 0.7 0.6 0.4 0.25 0.2 0.1.
SCORES = np.array([[0.9, 0.2], [0.6, 0.7], [0.4, 0.25], [0.1, 0.8]])
TARGETS = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])


def test_f1_strategy_hand_computed():
    # label 0 ranked: 0.9(+) 0.6(-) 0.4(+) 0.1(-), 2 positives; F1 of the cuts 2/3, 1/2, 4/5, 2/3: keep 3, threshold
    # between 0.4 and 0.1. Label 1 ranked: 0.8(+) 0.7(+) 0.25(-) 0.2(-): F1 1 at 2 kept, between 0.7 and 0.25.
    calibration = calibrate_thresholds(SCORES, TARGETS, "f1", min_positives=1)
    assert calibration.thresholds.tolist() == pytest.approx([0.25, 0.475], abs=1e-12)
    assert calibration.fallbacks == {}


def test_precision_strategy_hand_computed():
    # precision of the cuts, label 0: 1, 1/2, 2/3, 1/2; label 1: 1, 1, 2/3, 1/2. The lowest cut reaching the target.
    at_60 = calibrate_thresholds(SCORES, TARGETS, "precision", target_precision=0.6, min_positives=1)
    assert at_60.thresholds.tolist() == pytest.approx([0.25, 0.225], abs=1e-12)
    at_90 = calibrate_thresholds(SCORES, TARGETS, "precision", target_precision=0.9, min_positives=1)
    assert at_90.thresholds.tolist() == pytest.approx([0.75, 0.475], abs=1e-12)


def test_global_strategy_hand_computed():
    # CF1 + OF1 at each cut of all scores: 0.85: 1/3 + 2/5; 0.75: 2/3 + 2/3; 0.65: 6/7 + 6/7; 0.5: 3/4 + 3/4;
    # 0.325: (CP 5/6, CR 1) 10/11 + (OP 4/5, OR 1) 8/9 = 1.798, the best; 0.225: 4/5 + 4/5; 0.15 and 0.1 lower.
    assert global_threshold(SCORES, TARGETS) == pytest.approx(0.325, abs=1e-12)
    calibration = calibrate_thresholds(SCORES, TARGETS, "global")
    assert calibration.thresholds.tolist() == pytest.approx([0.325, 0.325], abs=1e-12)


def test_fallbacks_to_the_global_threshold_are_stated():
    few = calibrate_thresholds(SCORES, TARGETS, "f1", min_positives=3)
    assert few.thresholds.tolist() == pytest.approx([0.325, 0.325], abs=1e-12)
    assert few.fallbacks == {0: "2 positive(s), fewer than 3", 1: "2 positive(s), fewer than 3"}
    # one label whose best precision is 1/2: 0.6 is never reached; its global threshold: cuts 0.7 (CF1 = OF1 = 0),
    # 0.3 (2/3 + 2/3) and 0.1 (1/2 + 1/2)
    unreachable = calibrate_thresholds([[0.9], [0.5], [0.1]], [[0], [1], [0]], "precision", 0.6, min_positives=1)
    assert unreachable.thresholds.tolist() == pytest.approx([0.3], abs=1e-12)
    assert unreachable.fallbacks == {0: "precision 0.6 is never reached"}


def test_ignored_entries_and_ties():
    ignored = TARGETS.copy()
    ignored[2, 0] = -1  # label 0 then ranks 0.9(+) 0.6(-) 0.1(-): F1 1 keeping only 0.9
    assert f1_threshold(SCORES[:, 0], ignored[:, 0]) == pytest.approx(0.75)
    # two equal scores are kept or left out together: F1 2/3 keeping both, 1/2 keeping all
    assert f1_threshold(np.array([0.8, 0.8, 0.3]), np.array([1, 0, 0])) == pytest.approx(0.55)


# ---- configs ----------------------------------------------------------------------------------------------------


def family_config(config_class, **values):
    if config_class in (PatchCTConfig, PVLRConfig):
        values.setdefault("vision_config", {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2})
    return config_class(id2label={0: "cat", 1: "dog"}, **values)


@pytest.mark.parametrize("config_class", [HSVLTConfig, MSRNConfig, PatchCTConfig, PVLRConfig])
def test_every_family_config_validates_label_thresholds(config_class):
    source = {"dataset": "digits", "split": "validation"}
    config = family_config(config_class, label_thresholds=[0.25, 0.75], label_thresholds_source=source)
    reloaded = config_class.from_dict(config.to_dict())
    assert (reloaded.label_thresholds, reloaded.label_thresholds_source) == ([0.25, 0.75], source)
    assert family_config(config_class).label_thresholds is None
    for bad in ([0.5], [0.5, float("nan")], [0.5, float("inf")], [0.5, 1.5], [-0.1, 0.5]):
        with pytest.raises((ValueError, StrictDataclassError), match=r"label_thresholds must be None or one finite"):
            family_config(config_class, label_thresholds=bad)


# ---- decisions --------------------------------------------------------------------------------------------------

LOGITS = np.log(np.array([[0.3, 0.6, 0.9]]) / (1 - np.array([[0.3, 0.6, 0.9]])))  # scores 0.3, 0.6, 0.9


def labels_of(results):
    return [entry["label"] for entry in results[0]]


def test_post_process_uses_the_checkpoints_thresholds():
    processor = MultiLabelImageProcessor()
    config = HSVLTConfig(id2label={0: "a", 1: "b", 2: "c"}, label_thresholds=[0.2, 0.7, 0.95])
    assert labels_of(processor.post_process_multi_label(LOGITS, config=config)) == ["a"]
    assert labels_of(processor.post_process_multi_label(LOGITS, threshold=0.5, config=config)) == ["c", "b"]
    assert labels_of(processor.post_process_multi_label(LOGITS, threshold=[0.1, 0.1, 0.1], config=config)) == [
        "c",
        "b",
        "a",
    ]
    assert labels_of(processor.post_process_multi_label(LOGITS, threshold={"c": 0.9}, config=config)) == ["c", "a"]
    assert labels_of(processor.post_process_multi_label(LOGITS, threshold=None, top_k=2, config=config)) == ["c", "b"]
    uncalibrated = HSVLTConfig(id2label={0: "a", 1: "b", 2: "c"})
    assert labels_of(processor.post_process_multi_label(LOGITS, config=uncalibrated)) == ["c", "b"]
    with pytest.raises(ValueError, match=r"threshold names labels the model does not have: \['x'\]"):
        processor.post_process_multi_label(LOGITS, threshold={"x": 0.5}, config=config)
    with pytest.raises(ValueError, match=r"one value per label \(3\), got 2"):
        processor.post_process_multi_label(LOGITS, threshold=[0.5, 0.5], config=config)
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\].*'b': 2"):
        processor.post_process_multi_label(LOGITS, threshold={"b": 2}, config=config)


@pytest.fixture(scope="module")
def open_vocabulary_checkpoint(tmp_path_factory):
    """A tiny PatchCT (labels cat, dog, person) with calibrated thresholds 0, 1 and 0.5."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer)
    model.class_name_tokenizer = tokenizer
    model.config.label_thresholds = [0.0, 1.0, 0.5]
    directory = tmp_path_factory.mktemp("thresholds") / "patchct"
    prepare_for_push(model, clip_image_processor(), directory)
    return directory


def test_relabelling_keeps_the_thresholds_of_known_names():
    tokenizer = tiny_tokenizer()
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer)
    model.config.label_thresholds = [0.1, 0.2, 0.3]
    model.set_class_names(["person", "cat"], tokenizer)
    assert model.config.label_thresholds == [0.3, 0.1]
    model.set_class_names(["person", "bird"], tokenizer)
    assert model.config.label_thresholds is None


def test_pipeline_returns_the_labels_at_or_above_their_thresholds(open_vocabulary_checkpoint):
    classifier = pipeline("image-classification", model=str(open_vocabulary_checkpoint), trust_remote_code=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    every = classifier(image, top_k=None)
    scores = {entry["label"]: entry["score"] for entry in every}
    assert sorted(scores) == sorted(NAMES) and [entry["score"] for entry in every] == sorted(scores.values())[::-1]
    thresholds = dict(zip(NAMES, [0.0, 1.0, 0.5]))
    expected = [entry["label"] for entry in every if entry["score"] >= thresholds[entry["label"]]]
    assert [entry["label"] for entry in classifier(image)] == expected
    assert [entry["label"] for entry in classifier(image, top_k=1)] == [every[0]["label"]]
    assert [entry["label"] for entry in classifier(image, threshold=0.0)] == [entry["label"] for entry in every]
    with_mapping = classifier(image, threshold={"dog": 0.0})
    assert "dog" in [entry["label"] for entry in with_mapping] and "cat" in [entry["label"] for entry in with_mapping]
    # candidate labels: the calibrated threshold of a trained name, 0.5 for the others, and the same arguments
    candidates = classifier(image, candidate_labels=["dog", "cat", "bird"], top_k=None)
    candidate_scores = {entry["label"]: entry["score"] for entry in candidates}
    kept = [entry["label"] for entry in classifier(image, candidate_labels=["dog", "cat", "bird"])]
    assert "cat" in kept and "dog" not in kept and ("bird" in kept) == (candidate_scores["bird"] >= 0.5)
    assert [entry["label"] for entry in classifier(image, candidate_labels="dog,cat", threshold=0.0)] == sorted(
        ["dog", "cat"], key=lambda name: -candidate_scores[name]
    )


def test_demo_thresholds_shift_and_the_raw_rule():
    from transformers_hsvlt.demo import label_thresholds

    calibrated = {"a": 0.2, "b": 0.7, "c": 0.95}
    assert label_thresholds(["a", "b", "c"], calibrated, 0.0, raw=False).tolist() == pytest.approx([0.2, 0.7, 0.95])
    assert label_thresholds(["a", "b", "c"], calibrated, 0.1, raw=False).tolist() == pytest.approx([0.3, 0.8, 1.0])
    assert label_thresholds(["a", "b", "c"], calibrated, -0.1, raw=True).tolist() == pytest.approx([0.4, 0.4, 0.4])
    assert label_thresholds(["c", "new"], calibrated, 0.0, raw=False).tolist() == pytest.approx([0.95, 0.5])
    assert label_thresholds(["a"], {}, 0.0, raw=False).tolist() == [0.5]


# ---- the commands on a tiny trained model ------------------------------------------------------------------------

SPLIT_SIZES = ["--digits_train_size", "32", "--digits_validation_size", "300", "--digits_test_size", "300"]
RUNTIME = ["--quiet", "--num_workers", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """HSVLT of widths 16-64 at 32 px trained for 150 steps on 800 digit canvases: it ranks the digits better than
    chance, but its scores are far from calibrated (few reach 0.5)."""
    output = tmp_path_factory.mktemp("calibration") / "trained"
    arguments = [
        "--output_dir", output, "--digits_train_size", "800", "--digits_test_size", "64", "--max_steps", "150",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--eval_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--dataloader_num_workers", "0", "--quiet",
        "--random_label_embedding_size", "16", "--image_size", "32",
        "--config_overrides", "hidden_sizes=[16,32,48,64],depths=[1,1,1,1],initializer_range=0.1",
    ]  # fmt: skip
    assert train_cli.main([str(argument) for argument in arguments]) == 0
    return output


def run(module, argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = module.main([str(argument) for argument in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def evaluate(checkpoint, json_path, capsys, *data_arguments) -> tuple[dict, str]:
    code, out, err = run(eval_cli, [checkpoint, *data_arguments, *RUNTIME, "--json", json_path], capsys)
    assert code == 0, err
    return json.loads(json_path.read_text()), out


@pytest.mark.slow
def test_calibrated_thresholds_beat_the_half_rule_on_held_out_digits(trained, tmp_path, capsys):
    checkpoint = shutil.copytree(trained, tmp_path / "model")
    before = {path.name for path in checkpoint.iterdir()}
    code, out, err = run(
        calibrate_cli, [checkpoint, "--calibration_split", "validation", *SPLIT_SIZES, *RUNTIME], capsys
    )
    assert code == 0, err
    assert "calibrated on the 'validation' split of digits, 300 images, strategy f1" in out
    config = json.loads((checkpoint / "config.json").read_text())
    assert len(config["label_thresholds"]) == 10
    assert config["label_thresholds_source"]["split"] == "validation"
    assert {path.name for path in checkpoint.iterdir()} == before  # examples, results, run record kept
    card = (checkpoint / "README.md").read_text()
    assert "## Training" in card and "## Thresholds" in card and "'validation' split of digits" in card
    for label, threshold in zip(config["id2label"].values(), config["label_thresholds"]):
        assert f"| {label} | {round(threshold, 4):.4g} |" in card

    results, out = evaluate(checkpoint, tmp_path / "test.json", capsys, *SPLIT_SIZES)
    assert "at the calibrated thresholds (calibrated on the 'validation' split of digits" in out
    assert "optimistic" not in out and results["calibrated_on_evaluated_split"] is False
    assert results["CF1_calibrated"] > results["CF1"] + 10, (results["CF1_calibrated"], results["CF1"])

    results, out = evaluate(
        checkpoint, tmp_path / "validation.json", capsys, *SPLIT_SIZES, "--eval_split", "validation"
    )
    assert "THIS VERY SPLIT: optimistic" in out and results["calibrated_on_evaluated_split"] is True

    # hsvlt-predict decides with the calibrated thresholds; --threshold replaces them
    examples = sorted(str(path) for path in (checkpoint / "examples").glob("*.png"))
    code, out, _ = run(predict_cli, [checkpoint, *examples, "--json", "--threshold", "0", "--threads", "1"], capsys)
    every = {entry["image"]: entry["predictions"] for entry in json.loads(out)}
    thresholds = dict(zip(config["id2label"].values(), config["label_thresholds"]))
    code, out, _ = run(predict_cli, [checkpoint, *examples, "--json", "--threads", "1"], capsys)
    assert code == 0
    for entry in json.loads(out):
        expected = [label for label in every[entry["image"]] if label["score"] >= thresholds[label["label"]]]
        assert entry["predictions"] == expected
    assert any(entry["predictions"] for entry in json.loads(out))


def write_custom_split(directory, dataset) -> None:
    """A split of canvases as image files with `metadata.jsonl` (the custom dataset layout)."""
    directory.mkdir(parents=True)
    names = dataset.features["labels"].feature.names
    with open(directory / "metadata.jsonl", "w") as metadata:
        for index, row in enumerate(dataset):
            row["image"].save(directory / f"{index}.png")
            metadata.write(
                json.dumps({"file_name": f"{index}.png", "labels": [names[i] for i in row["labels"]]}) + "\n"
            )


@pytest.mark.slow
def test_calibrated_thresholds_beat_the_half_rule_on_a_custom_dataset(trained, tmp_path, capsys):
    canvases = build_digit_canvases(num_train=8, num_test=250, seed=7, num_validation=250)
    for split in ("train", "validation", "test"):
        write_custom_split(tmp_path / "data" / split, canvases[split])
    checkpoint = shutil.copytree(trained, tmp_path / "model")
    data = ["--dataset", "custom", "--data_dir", tmp_path / "data"]
    code, out, err = run(calibrate_cli, [checkpoint, *data, "--calibration_split", "validation", *RUNTIME], capsys)
    assert code == 0, err
    results, out = evaluate(checkpoint, tmp_path / "test.json", capsys, *data, "--eval_split", "test")
    assert f"calibrated on the 'validation' split of custom ({tmp_path / 'data'}), 250 images" in out
    assert results["CF1_calibrated"] > results["CF1"] + 10, (results["CF1_calibrated"], results["CF1"])
    results, out = evaluate(checkpoint, tmp_path / "validation.json", capsys, *data, "--eval_split", "validation")
    assert results["calibrated_on_evaluated_split"] is True


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A tiny random HSVLT checkpoint of the digit labels."""
    config = conftest_tiny_config(id2label=dict(enumerate(DIGIT_CLASS_NAMES)), image_size=32)
    directory = tmp_path_factory.mktemp("untrained") / "model"
    prepare_for_push(HSVLTForMultiLabelClassification(config).eval(), None, directory)
    return directory


def test_calibrate_refuses_bad_input_in_one_line(untrained, tmp_path, capsys):
    cases = [
        ([tmp_path / "missing", "--calibration_split", "validation"], "is not a local checkpoint directory"),
        ([untrained, "--calibration_split", "validation", "--target_precision", "0"], "--target_precision must be in"),
        (
            [untrained, "--calibration_split", "validation", "--min_positives", "0"],
            "--min_positives must be at least 1",
        ),
        ([untrained, "--calibration_split", "nowhere", *SPLIT_SIZES], "has no split 'nowhere'"),
    ]
    for argv, fragment in cases:
        code, _, err = run(calibrate_cli, [*argv, *RUNTIME], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("hsvlt-calibrate: error: "), err
        assert fragment in lines[0]
    assert json.loads((untrained / "config.json").read_text()).get("label_thresholds") is None


def test_a_failing_calibration_leaves_the_checkpoint_as_it_was(untrained, tmp_path, monkeypatch, capsys):
    checkpoint = shutil.copytree(untrained, tmp_path / "model")
    before = {path.name: path.read_bytes() for path in checkpoint.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "prepare_for_push", disk_full)
    arguments = [checkpoint, "--calibration_split", "validation", "--digits_validation_size", "20", *RUNTIME]
    code, _, err = run(calibrate_cli, [*arguments, *SPLIT_SIZES[:2]], capsys)
    assert code == 2 and "No space left on device" in err
    assert {path.name: path.read_bytes() for path in checkpoint.iterdir()} == before
    assert not list(tmp_path.glob(".model.writing-*"))


def test_the_digits_validation_split_is_held_out_handwriting_and_leaves_the_test_split_unchanged():
    without = build_digit_canvases(num_train=20, num_test=30, seed=3)
    canvases = build_digit_canvases(num_train=20, num_test=30, seed=3, num_validation=40)
    assert list(without) == ["train", "test"] and list(canvases) == ["train", "test", "validation"]
    assert canvases["test"]["image"] == without["test"]["image"]
    sources = {split: {i for row in canvases[split]["source_indices"] for i in row} for split in canvases}
    assert len(canvases["validation"]) == 40 and not sources["validation"] & sources["train"]
    assert canvases["validation"]["image"] != canvases["test"]["image"][:40]
