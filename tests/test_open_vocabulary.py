"""Open vocabulary end to end: unseen-label training and evaluation, `hsvlt-predict --labels`, the pipeline's
`candidate_labels`, and the refusals of models whose head is per-label."""

import json

import pytest
from transformers import pipeline

from transformers_hsvlt.cli import evaluate as eval_cli
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.cli import train as train_cli


SEEN = ["zero", "one", "two", "three", "four", "five"]
TINY = ["--digits_train_size", "32", "--digits_test_size", "16", "--max_steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def patchct_on_six_digits(tmp_path_factory):
    output = tmp_path_factory.mktemp("open") / "patchct"
    assert (
        train_cli.main(["--model", "patchct", "--train_labels", ",".join(SEEN), *TINY, "--output_dir", str(output)])
        == 0
    )
    return output


@pytest.mark.slow
def test_training_on_some_labels_reports_seen_and_unseen_map(patchct_on_six_digits):
    config = json.loads((patchct_on_six_digits / "config.json").read_text())
    assert list(config["id2label"].values()) == SEEN  # the checkpoint keeps the labels it was trained on
    results = json.loads((patchct_on_six_digits / "eval_results.json").read_text())
    assert len(results["per_class_AP"]) == 10  # the final evaluation scores all ten digits
    seen = [results["per_class_AP"][name] for name in SEEN]
    unseen = [value for name, value in results["per_class_AP"].items() if name not in SEEN]
    assert results["mAP_seen"] == pytest.approx(sum(seen) / len(seen))
    assert results["mAP_unseen"] == pytest.approx(sum(unseen) / len(unseen))
    assert (patchct_on_six_digits / "tokenizer.json").is_file()  # the tokenizer travels with the checkpoint


@pytest.mark.slow
def test_eval_scores_the_datasets_labels_and_reports_them_apart(patchct_on_six_digits, tmp_path, capsys):
    json_path = tmp_path / "eval.json"
    assert (
        eval_cli.main([str(patchct_on_six_digits), "--digits_test_size", "16", "--json", str(json_path), "--quiet"])
        == 0
    )
    assert "labels unseen in training: mAP" in capsys.readouterr().out
    trained = json.loads((patchct_on_six_digits / "eval_results.json").read_text())
    assert json.loads(json_path.read_text())["mAP_unseen"] == pytest.approx(trained["mAP_unseen"], abs=1e-4)


def test_predict_and_pipeline_score_any_label_names(patchct_on_six_digits, capsys):
    example = str(sorted((patchct_on_six_digits / "examples").glob("*.png"))[0])
    arguments = [str(patchct_on_six_digits), example, "--threshold", "0", "--json"]
    assert predict_cli.main([*arguments, "--labels", "seven, eight,zero"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert sorted(label["label"] for label in entry["predictions"]) == ["eight", "seven", "zero"]
    assert all(0 < label["score"] < 1 for label in entry["predictions"])
    assert predict_cli.main([*arguments, "--labels", "seven,,seven"]) == 2
    assert "--labels must be distinct, non-empty" in capsys.readouterr().err

    classifier = pipeline("image-classification", model=str(patchct_on_six_digits), trust_remote_code=True)
    scored = classifier(example, candidate_labels=["seven", "eight"], top_k=None)
    assert sorted(item["label"] for item in scored) == ["eight", "seven"]
    by_name = {item["label"]: item["score"] for item in scored}
    assert by_name["seven"] == pytest.approx(
        {label["label"]: label["score"] for label in entry["predictions"]}["seven"], abs=1e-5
    )  # sigmoid scores, independent of the other candidates


@pytest.mark.slow
def test_per_label_heads_refuse_label_names(tmp_path, capsys):
    output = tmp_path / "hsvlt"
    assert train_cli.main([*TINY, "--output_dir", str(output), "--random_label_embedding_size", "8"]) == 0
    example = str(sorted((output / "examples").glob("*.png"))[0])
    assert predict_cli.main([str(output), example, "--labels", "cat,dog"]) == 2
    assert "--labels needs an open-vocabulary model" in capsys.readouterr().err
    assert train_cli.main([*TINY, "--train_labels", "zero,one", "--output_dir", str(tmp_path / "x")]) == 2
    assert "cannot score labels unseen in training" in capsys.readouterr().err
    classifier = pipeline("image-classification", model=str(output), trust_remote_code=True)
    with pytest.raises(ValueError, match="candidate_labels needs an open-vocabulary model"):
        classifier(example, candidate_labels=["cat"])
