"""The architecture registry: a toy architecture registered from the tests goes through the real commands."""

import json

import pytest
from toy_architecture import TOY

from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.registry import Architecture, Paper, architecture_names, get_architecture, register


@pytest.fixture
def toy():
    register(TOY)
    return TOY


def test_builtin_architectures_are_registered():
    assert architecture_names()[0] == "hsvlt"
    hsvlt = get_architecture("hsvlt")
    assert hsvlt.config_class.model_type == "hsvlt" and {"hsvlt-s", "tiny"} <= set(hsvlt.presets)
    with pytest.raises(ValueError, match="unknown architecture 'nope'; the registered ones are"):
        get_architecture("nope")


def test_entries_are_checked():
    with pytest.raises(ValueError, match="unknown label_inputs \\['glove'\\]"):
        Architecture(**{**vars(TOY), "label_inputs": ("glove",)})
    with pytest.raises(ValueError, match="preset 'base' is not among \\['tiny'\\]"):
        Architecture(**{**vars(TOY), "default_preset": "base"})
    assert TOY.preset_for("auto", "digits") == "tiny" and TOY.preset_for(None, "coco2014") == "tiny"
    with pytest.raises(ValueError, match="--preset huge: toy-multilabel has the presets \\['tiny'\\]"):
        TOY.preset_for("huge", "digits")
    assert isinstance(TOY.paper, Paper)


@pytest.mark.slow
def test_a_registered_architecture_trains_evaluates_and_predicts_through_the_commands(toy, tmp_path, capsys):
    output = tmp_path / "toy"
    data = ["--digits_train_size", "32", "--digits_test_size", "16", "--image_size", "32"]
    assert train_cli.main(["--model", toy.name, *data, "--output_dir", str(output), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mAP:" in printed and f"checkpoint saved to {output}" in printed
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "toy-multilabel" and config["image_size"] == 32
    card = (output / "README.md").read_text()
    assert "**Toy**" in card and "| Width | 8 |" in card and "lr_schedule" in card and "linear" in card
    record = json.loads((output / "run_record.json").read_text())
    assert record["model"]["model"] == "toy-multilabel" and record["model"]["preset"] == "tiny"

    json_path = tmp_path / "eval.json"
    assert eval_cli.main([str(output), "--digits_test_size", "16", "--json", str(json_path), "--quiet"]) == 0
    printed_eval = capsys.readouterr().out
    assert "mAP:" in printed_eval
    evaluated = json.loads(json_path.read_text())
    trained = json.loads((output / "eval_results.json").read_text())
    assert evaluated["mAP"] == pytest.approx(trained["mAP"], abs=1e-4)  # one evaluation loop for both
    assert evaluated.keys() == trained.keys()  # one writer for both, the chance level included
    numbers = [name for name, value in trained.items() if isinstance(value, float)]
    assert {name: evaluated[name] for name in numbers} == pytest.approx(
        {name: trained[name] for name in numbers}, abs=1e-4
    )
    assert evaluated["per_class_AP"] == pytest.approx(trained["per_class_AP"], abs=1e-4, nan_ok=True)
    assert f"chance-level mAP of this split: {trained['chance_mAP']:.2f}" in printed_eval

    examples = sorted(str(path) for path in (output / "examples").glob("*.png"))
    assert predict_cli.main([str(output), *examples[:2], "--threshold", "0", "--top_k", "2", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [entry["image"] for entry in predictions] == examples[:2]
    assert all(len(entry["predictions"]) == 2 for entry in predictions)
