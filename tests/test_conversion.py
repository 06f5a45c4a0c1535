"""Converting the authors' checkpoints: `convert_authors_checkpoint`, the `hsvlt-convert` CLI, and refusals."""

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch
from reference_hsvlt import random_authors_state_dict, reference_logits
from transformers import AutoImageProcessor, AutoModelForImageClassification

from transformers_hsvlt import HSVLTForMultiLabelClassification
from transformers_hsvlt.cli.convert import main
from transformers_hsvlt.hsvlt.conversion import convert_authors_checkpoint
from transformers_hsvlt.weights import load_state_dict_file


DEPTHS, WIDTHS, LABEL_SIZE = [1, 1, 2, 1], [8, 16, 24, 32], 12
NAMES = ["aeroplane", "bicycle", "bird", "boat", "diningtable"]
EXPECTED_FILES = [
    "README.md",
    "config.json",
    "configuration_family.py",
    "configuration_hsvlt.py",
    "image_conversion_multilabel.py",
    "image_processing_multilabel.py",
    "model.safetensors",
    "modeling_family.py",
    "modeling_hsvlt.py",
    "modeling_hsvlt_attention.py",
    "modeling_hsvlt_backward.py",
    "modeling_hsvlt_encoder.py",
    "multilabel_losses.py",
    "pipeline_multilabel.py",
    "preprocessor_config.json",
]


@pytest.fixture
def authors_state():
    return random_authors_state_dict(DEPTHS, WIDTHS, LABEL_SIZE, len(NAMES))


@pytest.fixture
def label_files(tmp_path):
    labels = tmp_path / "label.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    embeddings = np.random.default_rng(0).standard_normal((len(NAMES), LABEL_SIZE)).astype(np.float32)
    np.save(tmp_path / "bert.npy", embeddings)
    return labels, tmp_path / "bert.npy"


def save_checkpoint(state, path, layout="state_dict"):
    torch.save(state if layout == "plain" else {layout: state, "epoch": 8}, path)
    return path


def reference(state, pixel_values, embeddings_path, num_heads=1):
    return reference_logits(state, pixel_values, torch.from_numpy(np.load(embeddings_path)), num_heads=num_heads)


@pytest.mark.parametrize("layout", ["plain", "model", "state_dict"])
@pytest.mark.slow
def test_cli_converts_to_a_remote_code_checkpoint(layout, authors_state, label_files, tmp_path, capsys):
    labels, embeddings = label_files
    checkpoint = save_checkpoint(authors_state, tmp_path / "best_model.pth", layout)
    output = tmp_path / "converted"
    arguments = [
        str(checkpoint),
        "--labels",
        str(labels),
        "--label-embeddings",
        str(embeddings),
        "--output",
        str(output),
    ]
    assert main(arguments) == 0
    assert "Converted" in capsys.readouterr().out
    assert sorted(path.name for path in output.iterdir()) == EXPECTED_FILES

    pixel_values = torch.rand(2, 3, 64, 64)
    expected = reference(authors_state, pixel_values, embeddings)
    for model in (
        HSVLTForMultiLabelClassification.from_pretrained(output),
        AutoModelForImageClassification.from_pretrained(output, trust_remote_code=True),
    ):
        torch.testing.assert_close(model.eval()(pixel_values).logits, expected, rtol=0, atol=1e-5)
        assert list(model.config.id2label.values()) == NAMES
    # with this package imported, the Auto classes use its registered HSVLT classes; the checkpoint's own copied code
    # is exercised in a fresh process without the package in tests/test_remote_code.py
    assert type(model).__name__ == "HSVLTForMultiLabelClassification"

    processor = AutoImageProcessor.from_pretrained(output, trust_remote_code=True)
    assert (processor.size["height"], processor.size["width"]) == (448, 448) and not processor.do_normalize
    card = (output / "README.md").read_text()
    assert "Converted with `hsvlt-convert` from the authors' checkpoint `best_model.pth`" in card
    assert "`diningtable`" in card

    stale = output / "eval_results.json"
    stale.write_text("{}")
    assert main(arguments) == 2  # never over an existing checkpoint unasked
    assert "--overwrite_output_dir" in capsys.readouterr().err
    assert main([*arguments, "--overwrite_output_dir"]) == 0
    assert sorted(path.name for path in output.iterdir()) == EXPECTED_FILES  # the stale file is gone


def test_function_with_heads(authors_state, label_files, tmp_path, capsys):
    labels, embeddings = label_files
    checkpoint = save_checkpoint(authors_state, tmp_path / "best_model.pth")
    model = convert_authors_checkpoint(checkpoint, labels, embeddings, num_attention_heads=2)
    assert not model.training and model.config.num_attention_heads == 2
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = reference(authors_state, pixel_values, embeddings, num_heads=2)
    torch.testing.assert_close(model(pixel_values).logits, expected, rtol=0, atol=1e-5)

    arguments = ["--label-embeddings", str(embeddings), "--output", str(tmp_path / "out"), "--num_heads", "2"]
    assert main([str(checkpoint), "--labels", str(labels), *arguments]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_attention_heads"] == 2
    assert (
        main(
            [
                str(checkpoint),
                "--labels",
                str(labels),
                "--cooccurrence",
                "adj.pkl",
                *arguments[:2],
                "--output",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    assert (
        "the hsvlt converter takes the options ['labels', 'label_embeddings', 'num_attention_heads']"
        in capsys.readouterr().err
    )


def _without(state, *prefixes):
    return {key: value for key, value in state.items() if not key.startswith(prefixes)}


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda state: _without(state, "stages.0.0.attn.query."),
            (
                r"does not match the HSVLT architecture read from it \(depths \[1, 1, 2, 1\].*missing: "
                r"hsvlt\.encoder\.stages\.0\.layers\.0\.label_attention\.query\.weight"
            ),
        ),
        (
            lambda state: {**state, "stages.1.0.adapter.weight": torch.zeros(3)},
            r"unexpected: stages\.1\.0\.adapter\.weight",
        ),
        (
            lambda state: {**state, "langs.1.bias": torch.zeros(17)},
            r"wrong shape: hsvlt\.encoder\.stages\.1\.label_projection\.bias \(17,\) vs expected \(16,\)",
        ),
        (
            lambda state: _without(state, "langs.", "text_head2.", "stages.0.0.attn.", "stages.0.0.res_gate."),
            r"missing \['langs\.0\.weight', 'text_head2\.weight'\].*plain ConvNeXt checkpoint.*"
            r"build_hsvlt_from_convnext",
        ),
        (
            lambda state: {"conv1.weight": torch.zeros(4, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(4, 4, 3, 3)},
            (
                r"missing \['downsample_layers\.0\.0\.weight', 'langs\.0\.weight', 'text_head2\.weight'\]; "
                r"unexpected keys: conv1\.weight, layer1\.0\.conv1\.weight"
            ),
        ),
    ],
    ids=["missing", "unexpected", "wrong-shape", "convnext-only", "other-architecture"],
)
def test_mismatched_keys_are_rejected_with_names(edit, message, authors_state, label_files, tmp_path):
    labels, embeddings = label_files
    checkpoint = save_checkpoint(edit(authors_state), tmp_path / "edited.pth")
    with pytest.raises(ValueError, match=message) as error:
        convert_authors_checkpoint(checkpoint, labels, embeddings)
    assert "edited.pth" in str(error.value)


def test_label_counts_must_agree(authors_state, label_files, tmp_path):
    labels, embeddings = label_files
    labels.write_text("\n".join(NAMES[:4]) + "\n")
    checkpoint = save_checkpoint(authors_state, tmp_path / "best_model.pth")
    with pytest.raises(
        ValueError,
        match=r"label\.txt \(label names\): 4; .*best_model\.pth \(rows of text_head2\.weight\): 5; "
        r".*bert\.npy \(label embeddings\): 5",
    ):
        convert_authors_checkpoint(checkpoint, labels, embeddings)


def test_label_embedding_width_must_match(authors_state, label_files, tmp_path):
    labels, embeddings = label_files
    np.save(embeddings, np.zeros((len(NAMES), 768), dtype=np.float32))
    checkpoint = save_checkpoint(authors_state, tmp_path / "best_model.pth")
    with pytest.raises(ValueError, match=r"bert\.npy: expected label embeddings of shape \(any, 12\).*got \(5, 768\)"):
        convert_authors_checkpoint(checkpoint, labels, embeddings)


class _Payload:
    """Unpickling this object runs code that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_pickled_code_is_refused_and_not_run(authors_state, label_files, tmp_path):
    labels, embeddings = label_files
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "malicious.pth"
    torch.save({"model": authors_state, "extra": _Payload(marker)}, checkpoint)

    with pytest.raises(
        ValueError,
        match=r"malicious\.pth was refused by torch\.load\(weights_only=True\).*GLOBAL exec was not an allowed global",
    ):
        load_state_dict_file(checkpoint)
    message = _cli_error(checkpoint, labels, embeddings, tmp_path / "out")
    assert message.startswith("hsvlt-convert: error: ") and "no code from the file was run" in message
    assert "\n" not in message
    assert not marker.exists() and not (tmp_path / "out").exists()

    torch.load(checkpoint, weights_only=False)  # the payload is live: unrestricted unpickling does run it
    assert marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"Checkpoint file .*missing\.pth does not exist"),
        (b"not a checkpoint", r"missing\.pth is not a PyTorch checkpoint readable by torch\.load"),
        ([1, 2, 3], r"missing\.pth does not hold a state dict: expected a non-empty dict of tensors .* got list"),
        ({"model": {"a": 1}}, r"missing\.pth is not a state dict: these entries are not named tensors: a"),
    ],
    ids=["absent", "garbage", "list", "not-tensors"],
)
def test_cli_user_errors_are_one_line(content, message, label_files, tmp_path):
    labels, embeddings = label_files
    checkpoint = tmp_path / "missing.pth"
    if isinstance(content, bytes):
        checkpoint.write_bytes(content)
    elif content is not None:
        torch.save(content, checkpoint)
    text = _cli_error(checkpoint, labels, embeddings, tmp_path / "o")
    assert text.startswith("hsvlt-convert: error: ") and "\n" not in text
    assert re.search(message, text), text


def test_cli_reports_bad_label_file(authors_state, label_files, tmp_path):
    _, embeddings = label_files
    checkpoint = save_checkpoint(authors_state, tmp_path / "best_model.pth")
    assert re.fullmatch(
        r"hsvlt-convert: error: .*nothere\.txt.*\n",
        _cli_error(checkpoint, tmp_path / "nothere.txt", embeddings, tmp_path / "o") + "\n",
    )


def _cli_error(checkpoint, labels, embeddings, output) -> str:
    """Run `hsvlt-convert` expecting a user error (exit code 2, nothing written); return its message."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(
            [str(checkpoint), "--labels", str(labels), "--label-embeddings", str(embeddings), "--output", str(output)]
        )
    assert code == 2 and not output.exists()
    return stderr.getvalue().rstrip("\n")
