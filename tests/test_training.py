"""The main job end to end on a tiny preset: Trainer training, checkpoint contents, resume, eval and predict CLIs."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.registry import get_architecture
from transformers_hsvlt.training import WarmupReduceLROnPlateau, parse_train_arguments
from transformers_hsvlt.training.recipe import resolve_recipe


TINY_RUN = [
    "--digits_train_size", "48",
    "--digits_test_size", "24",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "24",
    "--random_label_embedding_size", "16",
    "--dataloader_num_workers", "0",
    "--disable_tqdm", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of 3 steps, run as one epoch then resumed from its checkpoint for the second."""
    output_dir = tmp_path_factory.mktemp("run") / "hsvlt-digits"
    assert train_cli.main([*TINY_RUN, "--output_dir", str(output_dir), "--num_train_epochs", "1"]) == 0
    first_state = json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert (
        train_cli.main(
            [*TINY_RUN, "--output_dir", str(output_dir), "--num_train_epochs", "2", "--resume_from_checkpoint", "last"]
        )
        == 0
    )
    return output_dir, first_state


def test_defaults_are_the_presets_recipes():
    _, data_args, _, training_args = parse_train_arguments([])
    assert data_args.dataset == "digits" and training_args.output_dir.endswith("hsvlt-digits")
    assert training_args.metric_for_best_model == "mAP" and training_args.load_best_model_at_end
    model_args, _, _, authors = parse_train_arguments(["--dataset", "voc2007", "--data_dir", "x"])
    assert (authors.learning_rate, authors.weight_decay, authors.per_device_train_batch_size) == (1e-5, 1e-4, 4)
    recipe = resolve_recipe(get_architecture("hsvlt"), model_args)
    assert (authors.num_train_epochs, authors.seed) == (100, 1)
    assert (recipe.warmup_epochs, recipe.early_stopping_patience) == (2.0, 4)
    _, _, _, overridden = parse_train_arguments(["--dataset", "voc2007", "--data_dir", "x", "--learning_rate", "3e-4"])
    assert overridden.learning_rate == 3e-4


@pytest.mark.slow
def test_training_writes_a_complete_checkpoint(trained):
    output_dir, _ = trained
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "modeling_hsvlt.py",
                 "configuration_hsvlt.py", "image_processing_multilabel.py", "README.md", "eval_results.json"):  # fmt: skip
        assert (output_dir / name).exists(), name
    config = json.loads((output_dir / "config.json").read_text())
    assert list(config["id2label"].values()) == [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    ]
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_hsvlt.HSVLTForMultiLabelClassification"
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert set(results["per_class_AP"]) == set(config["id2label"].values())
    assert 0 <= results["mAP"] <= 100 and 0 < results["chance_mAP"] < 100
    examples = sorted(path.name for path in (output_dir / "examples").glob("*.png"))
    assert len(examples) == 6 and examples[0].startswith("00_")
    card = (output_dir / "README.md").read_text()
    assert "trust_remote_code=True" in card and "mAP" in card


@pytest.mark.slow
def test_resume_continues_the_step_count(trained):
    output_dir, first_state = trained
    assert first_state["global_step"] == 3
    final_state = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert final_state["global_step"] == 6
    logged_epochs = [entry["epoch"] for entry in final_state["log_history"] if "eval_mAP" in entry]
    assert logged_epochs == [1.0, 2.0]  # the first epoch's evaluation comes from the resumed checkpoint


@pytest.mark.slow
def test_eval_cli_prints_the_metric_table(trained, tmp_path, capsys):
    output_dir, _ = trained
    json_path = tmp_path / "results.json"
    arguments = [str(output_dir), "--digits_test_size", "24", "--json", str(json_path), "--seed", "1"]
    assert eval_cli.main([*arguments, "--swept_threshold"]) == 0
    table = capsys.readouterr().out
    assert "mAP:" in table and "CF1" in table and "seven" in table
    assert "at the swept logit threshold" in table and "tuned on this split" in table
    results = json.loads(json_path.read_text())
    assert results["swept_logit_threshold"] in [round(-1.0 + 0.1 * step, 1) for step in range(20)]
    trained_results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["num_images"] == 24
    assert results["mAP"] == pytest.approx(trained_results["mAP"], abs=1e-3)  # same model, same split


@pytest.mark.slow
def test_predict_cli_table_json_heatmaps_and_unreadable_images(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="heatmap figures need matplotlib (the demo extra)")
    output_dir, _ = trained
    images = []
    for index, size in enumerate([(90, 60), (64, 64)]):
        path = tmp_path / f"photo{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        images.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    heatmap_dir = tmp_path / "heatmaps"
    status = predict_cli.main(
        [str(output_dir), str(tmp_path / "photo*.png"), str(broken), "--threshold", "0", "--top-k", "2", "--json",
         "--heatmaps", str(heatmap_dir)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1
    assert str(broken) in captured.err
    predictions = json.loads(captured.out)
    assert [item["image"] for item in predictions] == [str(path) for path in images]
    assert all(len(item["predictions"]) == 2 for item in predictions)
    for item, path in zip(predictions, images):
        figure = Image.open(heatmap_dir / f"{path.stem}.png")  # one readable figure per image: the image and its labels
        assert figure.width >= 384 * (1 + len(item["predictions"])) and figure.height >= 256
        for label in item["predictions"]:
            raw = np.load(heatmap_dir / f"{path.stem}_{label['label']}.npy")
            assert raw.ndim == 2 and np.isfinite(raw).all()
    assert predict_cli.main([str(output_dir), str(images[0])]) == 0
    assert str(images[0]) in capsys.readouterr().out


def test_predict_refuses_other_architectures(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert predict_cli.main([str(tmp_path), "image.png"]) == 2
    assert "model_type 'bert': unknown architecture 'bert'; the registered ones are ['hsvlt'" in capsys.readouterr().err


@pytest.mark.slow
def test_console_scripts_are_installed_and_train_help_lists_all_arguments():
    commands = ["hsvlt-train", "hsvlt-eval", "hsvlt-predict", "hsvlt-embed-labels", "hsvlt-convert"]
    missing = [command for command in commands if shutil.which(command) is None]
    assert not missing, f"{missing} not on PATH: install the package with pip"
    result = subprocess.run([shutil.which("hsvlt-train"), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert "--learning_rate" in result.stdout and "--dataset" in result.stdout and "--backbone" in result.stdout


def test_warmup_then_plateau_schedule():
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupReduceLROnPlateau(optimizer, warmup_steps=4, factor=0.1, patience=2)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    for metric in (50.0, 60.0, 59.0, 60.0):  # two evaluations without improvement reduce the rate
        scheduler.report(metric)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    state = scheduler.state_dict()
    restored = WarmupReduceLROnPlateau(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), warmup_steps=4)
    restored.load_state_dict(state)
    assert (restored.scale, restored.best) == (pytest.approx(0.1), 60.0)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.mark.parametrize("stage, side", [(-1, 2), (0, 16), (2, 4)])
@pytest.mark.slow
def test_heatmaps_are_the_last_block_attention_of_the_chosen_stage(trained, stage, side):
    import torch

    from transformers_hsvlt.checkpoints import load_checkpoint
    from transformers_hsvlt.inference import predict

    output_dir, _ = trained
    model, processor = load_checkpoint(str(output_dir), "cpu")
    image = Image.open(sorted((output_dir / "examples").glob("*.png"))[0])
    (prediction,) = predict(
        model, processor, [image], ["x"], threshold=0, top_k=1, heatmap_method="attention", heatmap_stage=stage
    )
    (label,) = prediction.labels
    heatmap = prediction.heatmaps[label["label"]]
    assert heatmap.shape == (side, side)  # 64 px input: stage maps of 16, 8, 4 and 2 tokens a side
    with torch.no_grad():
        attentions = model(**processor(image, return_tensors="pt"), output_attentions=True).attentions
    last_block_of_stage = [0, 1, 4, 5][stage]  # tiny preset depths [1, 1, 3, 1]
    expected = attentions[last_block_of_stage][0].mean(0)[label["index"]].reshape(side, side).numpy()
    np.testing.assert_allclose(heatmap, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(heatmap.sum(), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="stage must be stage indices in \\[-4, 3\\], got 4"):
        predict(model, processor, [image], ["x"], threshold=0, top_k=1, heatmap_method="attention", heatmap_stage=4)
