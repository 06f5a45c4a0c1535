"""Every registered architecture (the built-in ones and the test-only toy) through every command: each capability
its registry entry declares works, and each one it does not declare is refused with one line and exit code 2."""

import csv
import shutil

import pytest
from test_label_embeddings import WIDTH, encoder_dir  # noqa: F401 (a fixture used below)
from toy_architecture import TOY

from transformers_hsvlt.checkpoints import load_model
from transformers_hsvlt.cli import convert as convert_cli
from transformers_hsvlt.cli import embed_labels as embed_labels_cli
from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.export import export_onnx
from transformers_hsvlt.modeling_family import FamilyPreTrainedModel
from transformers_hsvlt.registry import architecture_names, get_architecture, register
from transformers_hsvlt.visualization import METHODS


pytestmark = pytest.mark.slow

register(TOY)
NAMES = architecture_names()  # at collection: the built-in architectures and the toy
DIGITS = ["--digits_train_size", "16", "--digits_test_size", "8", "--quiet"]


def one_line_refusal(capsys, needle: str) -> str:
    """The command's stderr: one line holding `needle`, no traceback."""
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error and needle in error, error
    return error


@pytest.fixture(scope="module", params=NAMES)
def trained(request, tmp_path_factory):
    """A checkpoint of the architecture trained for one step through `hsvlt-train` (random label embeddings of
    `WIDTH`, the width of the tiny text encoder of `test_label_embeddings`)."""
    architecture = get_architecture(request.param)
    output = tmp_path_factory.mktemp(architecture.name) / "checkpoint"
    arguments = ["--model", architecture.name, *DIGITS, "--max_steps", "1", "--output_dir", str(output)]
    if "embeddings" in architecture.label_inputs:
        arguments += ["--random_label_embedding_size", str(WIDTH)]
    assert train_cli.main(arguments) == 0
    return architecture, output


def test_the_model_is_a_family_model_with_the_declared_class_names_capability(trained):
    architecture, checkpoint = trained
    model = load_model(str(checkpoint))
    assert isinstance(model, FamilyPreTrainedModel)
    assert model.supports_class_names == architecture.open_vocabulary
    assert (model.class_name_tokenizer is not None) == architecture.open_vocabulary


def test_eval_and_predict_run(trained, capsys):
    _, checkpoint = trained
    assert eval_cli.main([str(checkpoint), *DIGITS]) == 0
    examples = sorted(str(path) for path in (checkpoint / "examples").glob("*.png"))
    assert predict_cli.main([str(checkpoint), examples[0], "--threshold", "0", "--json"]) == 0
    assert '"predictions"' in capsys.readouterr().out


def test_predict_labels_needs_open_vocabulary(trained, capsys):
    architecture, checkpoint = trained
    image = str(next((checkpoint / "examples").glob("*.png")))
    code = predict_cli.main([str(checkpoint), image, "--labels", "zebra,kite", "--threshold", "0", "--json"])
    if architecture.open_vocabulary:
        assert code == 0 and '"zebra"' in capsys.readouterr().out
    else:
        assert code == 2
        one_line_refusal(capsys, "--labels needs an open-vocabulary model")


@pytest.mark.parametrize("method", METHODS)
def test_heatmap_methods_run_or_are_refused(trained, method, tmp_path, capsys):
    architecture, checkpoint = trained
    image = str(next((checkpoint / "examples").glob("*.png")))
    arguments = [str(checkpoint), image, "--heatmaps", str(tmp_path), "--heatmap_method", method, "--top_k", "1"]
    code = predict_cli.main([*arguments, "--threshold", "0"])
    if method in architecture.heatmap_methods:
        assert code == 0 and list(tmp_path.glob("*.npy"))
    else:
        assert code == 2 and not list(tmp_path.iterdir())
        one_line_refusal(capsys, f"--heatmap_method {method}: {architecture.name} models have the heatmap methods")


def test_embed_labels_relabels_only_what_takes_label_embeddings(trained, encoder_dir, tmp_path, capsys):  # noqa: F811
    architecture, checkpoint = trained
    labels = tmp_path / "label.txt"
    labels.write_text("cat\ndog\n")
    relabelled = tmp_path / "relabelled"
    arguments = [str(labels), "--encoder", str(encoder_dir), "--output", str(tmp_path / "labels.npy")]
    code = embed_labels_cli.main([*arguments, "--model", str(checkpoint), "--save_model", str(relabelled)])
    if architecture.relabelling == "label_embeddings":
        assert code == 2  # names the checkpoint has no head rows for need --allow_untrained_labels
        capsys.readouterr()
        assert embed_labels_cli.main([*arguments, "--model", str(checkpoint), "--save_model", str(relabelled),
                                      "--allow_untrained_labels"]) == 0  # fmt: skip
        assert list(load_model(str(relabelled)).config.id2label.values()) == ["cat", "dog"]
    else:
        assert code == 2 and not relabelled.exists()
        one_line_refusal(capsys, f"{architecture.name} models take no new label embeddings")


def test_fine_tuning_on_new_labels_relabels_or_is_refused(trained, tmp_path, capsys):
    architecture, checkpoint = trained
    data = tmp_path / "shapes"
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
        with open(data / split / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "labels"])
            for index, example in enumerate(sorted((checkpoint / "examples").glob("*.png"))):
                shutil.copy(example, data / split / example.name)
                writer.writerow([example.name, "odd" if index % 2 else "even"])
    output = tmp_path / "fine-tuned"
    arguments = ["--model", architecture.name, "--model_name_or_path", str(checkpoint), "--dataset", "custom"]
    arguments += ["--data_dir", str(data), "--max_steps", "1", "--output_dir", str(output), "--quiet"]
    code = train_cli.main(arguments)
    if architecture.relabelling is not None:
        assert code == 0
        assert list(load_model(str(output)).config.id2label.values()) == ["even", "odd"]
    else:
        assert code == 2
        one_line_refusal(capsys, f"{architecture.name} models have a fixed label set")


def test_label_embedding_flags_need_label_embeddings(trained, tmp_path, capsys):
    architecture, _ = trained
    code = train_cli.main(["--model", architecture.name, "--text_encoder", "bert-base-uncased", *DIGITS,
                           "--output_dir", str(tmp_path / "out"), "--num_train_epochs", "0"])  # fmt: skip
    assert code == 2
    if "embeddings" in architecture.label_inputs:  # the flag is accepted; the run is refused for its length
        one_line_refusal(capsys, "--num_train_epochs must be positive")
    else:
        one_line_refusal(capsys, f"--text_encoder: {architecture.name} takes no label embeddings")


def test_convert_needs_a_converter(trained, tmp_path, capsys):
    architecture, _ = trained
    missing = str(tmp_path / "missing.pth")
    code = convert_cli.main(["--architecture", architecture.name, missing, "--output", str(tmp_path / "converted")])
    assert code == 2
    error = capsys.readouterr().err
    if architecture.convert is not None:  # the converter runs (tests/test_conversion.py converts real layouts)
        assert f"the {architecture.name} converter takes the options" in error and "no converter" not in error
    else:
        assert "has no converter of its authors' checkpoints" in error and error.count("\n") == 1


def test_onnx_export_is_declared(trained, tmp_path):
    architecture, checkpoint = trained
    if architecture.onnx_export:
        pytest.skip("the ONNX export itself is tested in tests/test_export.py")
    with pytest.raises(ValueError, match=f"export_onnx: {architecture.name} models declare no ONNX export"):
        export_onnx(load_model(str(checkpoint)), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_capabilities_are_declared_on_every_entry():
    declared = {name: get_architecture(name) for name in NAMES}
    assert {name for name, entry in declared.items() if entry.open_vocabulary} == {"patchct", "pvlr"}
    assert declared["hsvlt"].relabelling == "label_embeddings" and declared["msrn"].relabelling is None
    assert declared[TOY.name].heatmap_methods == ("attention",)
    assert set(declared["hsvlt"].heatmap_methods) == set(METHODS)
    assert all(issubclass(entry.model_class, FamilyPreTrainedModel) for entry in declared.values())
