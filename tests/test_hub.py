"""Hub sharing, offline: the model card, the folder prepared for upload, and the uploads (Hub calls monkeypatched)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers.utils.hub as transformers_hub
from conftest import tiny_config
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments, pipeline

from transformers_hsvlt import HSVLTForMultiLabelClassification, MultiLabelImageProcessor
from transformers_hsvlt.hub import prepare_for_push, push_checkpoint_to_hub
from transformers_hsvlt.model_card import create_model_card, save_model_card


REPO_ID = "my-user/hsvlt-s-voc2007"
REMOTE_CODE_FILES = (
    "configuration_family.py",
    "configuration_hsvlt.py",
    "modeling_hsvlt.py",
    "modeling_hsvlt_attention.py",
    "modeling_hsvlt_backward.py",
    "modeling_hsvlt_encoder.py",
    "modeling_family.py",
    "multilabel_losses.py",
    "image_processing_multilabel.py",
    "image_conversion_multilabel.py",
    "pipeline_multilabel.py",
)
UPLOADED_FILES = sorted(
    ["README.md", "config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES]
)
CARD_ARGUMENTS = dict(
    base_model="facebook/convnext-small-384-22k-1k",
    dataset_name="voc2007",
    metrics={
        "eval_mAP": 0.95123,
        "eval_OF1": 0.8875,
        "eval_runtime": 12.5,
        "eval_samples_per_second": 40.0,
        "epoch": 8.0,
    },
    per_class_ap=[0.99, 0.9, 0.8, 0.7, 0.6],
    repo_id=REPO_ID,
)


@pytest.fixture
def model():
    model = HSVLTForMultiLabelClassification(tiny_config()).eval()
    model.set_label_embeddings(torch.randn(5, 12), ["cat", "dog", "person", "car", "tree"])
    return model


@pytest.fixture
def hub_calls(monkeypatch):
    """Record the Hub calls instead of making them; `upload_folder` also records the README it would upload."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, **kwargs):
        readme = Path(kwargs["folder_path"]) / "README.md"
        calls.append(("upload_folder", kwargs, readme.read_text() if readme.exists() else None))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/0")

    def create_commit(self, repo_id, operations, **kwargs):
        files = {operation.path_in_repo: Path(operation.path_or_fileobj).read_bytes() for operation in operations}
        calls.append(("create_commit", repo_id, files))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(transformers_hub, "create_and_tag_model_card", lambda *args, **kwargs: ModelCard("generic"))
    return calls


def test_card_contents_and_metadata(model, tmp_path):
    arguments = TrainingArguments(output_dir=str(tmp_path / "run"), learning_rate=1e-5, seed=1, report_to="none")
    card = create_model_card(model, training_args=arguments, **CARD_ARGUMENTS)
    text = str(card)

    assert "# hsvlt-s-voc2007" in text
    assert "5 labels, in output order: `cat`, `dog`, `person`, `car`, `tree`." in text
    assert "ConvNeXt, depths [1, 1, 2, 1], widths [8, 16, 24, 32], patch 4" in text
    assert "Trained on **voc2007**" in text
    assert "[facebook/convnext-small-384-22k-1k](https://huggingface.co/facebook/convnext-small-384-22k-1k)" in text
    assert "| mAP | 0.9512 |" in text and "| OF1 | 0.8875 |" in text
    assert "runtime" not in text and "samples_per_second" not in text and "| epoch" not in text
    assert "| cat | 0.99 |" in text and "| tree | 0.6 |" in text
    assert "| learning_rate | 1e-05 |" in text and "| seed | 1 |" in text and "| output_dir" not in text
    assert f'AutoImageProcessor.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text
    assert f'AutoModelForImageClassification.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text
    assert f'pipeline("image-classification", model="{REPO_ID}", trust_remote_code=True)' in text
    assert "@inproceedings{ouyang2023hsvlt" in text and "eprint        = {2407.16244}" in text
    assert "ACM International Conference on Multimedia" in text

    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.library_name == "transformers" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0"
    assert {"multi-label-classification", "hsvlt"} <= set(data.tags)
    assert data.base_model == "facebook/convnext-small-384-22k-1k" and data.datasets == ["voc2007"]
    results = {result.metric_name: result.metric_value for result in data.eval_results}
    assert results == {"mAP": 0.95123, "OF1": 0.8875}
    assert data.eval_results[0].dataset_name == "voc2007"


def test_minimal_card_and_local_base_model(model, tmp_path):
    text = str(create_model_card(model.config, base_model=str(tmp_path), training_args={"lr": 0.001}))
    data = ModelCard(text).data
    assert data.base_model is None and data.eval_results is None  # a local path is not a Hub id
    assert "# HSVLT multi-label image classifier" in text and "path/to/this/checkpoint" in text
    assert "| lr | 0.001 |" in text and "## Evaluation" not in text


def test_save_model_card_reads_the_config_from_the_directory(model, tmp_path):
    model.save_pretrained(tmp_path)
    path = save_model_card(tmp_path, metrics={"mAP": 91.58}, dataset_name="coco2014")
    assert path == tmp_path / "README.md"
    text = path.read_text()
    assert "`person`" in text and "| mAP | 91.58 |" in text


@pytest.mark.slow
def test_prepared_folder_loads_with_remote_code(model, tmp_path):
    files = prepare_for_push(model, None, tmp_path, **CARD_ARGUMENTS)
    assert files == UPLOADED_FILES
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModelForImageClassification"] == (
        "modeling_hsvlt.HSVLTForMultiLabelClassification"
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 60, 3), dtype=np.uint8))

    processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    pixel_values = processor(images=image, return_tensors="pt").pixel_values
    torch.testing.assert_close(loaded(pixel_values).logits, model(pixel_values).logits)

    classifier = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True)
    predictions = classifier(image, top_k=5)
    scores = torch.sigmoid(model(pixel_values).logits)[0]
    assert {p["label"]: p["score"] for p in predictions} == pytest.approx(
        {name: scores[index].item() for index, name in model.config.id2label.items()}, abs=1e-5
    )


def test_push_checkpoint_to_hub_uploads_the_folder(model, tmp_path, hub_calls):
    prepare_for_push(model, MultiLabelImageProcessor(), tmp_path, repo_id=REPO_ID)
    commit = push_checkpoint_to_hub(tmp_path, REPO_ID, private=True, token="hf_test")
    assert commit.commit_url.startswith(f"https://huggingface.co/{REPO_ID}")
    (create, repo_id, create_kwargs), (upload, upload_kwargs, readme) = hub_calls
    assert (create, repo_id, create_kwargs) == ("create_repo", REPO_ID, {"private": True, "exist_ok": True})
    assert upload == "upload_folder" and upload_kwargs["repo_id"] == REPO_ID
    assert Path(upload_kwargs["folder_path"]) == tmp_path
    assert upload_kwargs["ignore_patterns"] == ["_*", "checkpoint-*"]
    assert "trust_remote_code=True" in readme


def test_incomplete_folder_is_not_pushed(model, tmp_path, hub_calls):
    prepare_for_push(model, None, tmp_path)
    (tmp_path / "modeling_hsvlt.py").unlink()
    (tmp_path / "README.md").unlink()
    with pytest.raises(
        ValueError, match=r"not a complete checkpoint for the Hub: missing README\.md, modeling_hsvlt\.py"
    ):
        push_checkpoint_to_hub(tmp_path, REPO_ID)
    assert hub_calls == []


def test_model_and_processor_push_to_hub_carry_the_remote_code(model, hub_calls):
    model.push_to_hub(REPO_ID)
    MultiLabelImageProcessor().push_to_hub(REPO_ID)
    (_, _, _), (_, _, model_files), (_, _, _), (_, _, processor_files) = hub_calls
    assert {"config.json", "model.safetensors", "configuration_hsvlt.py", "modeling_hsvlt.py"} <= set(model_files)
    assert "auto_map" in json.loads(model_files["config.json"])
    assert {"preprocessor_config.json", "image_processing_multilabel.py"} <= set(processor_files)


def test_trainer_push_then_our_card_wins(model, tmp_path, hub_calls):
    """`Trainer.push_to_hub` uploads Trainer's card; `save_model_card` and `push_checkpoint_to_hub` then replace it."""
    arguments = TrainingArguments(
        output_dir=str(tmp_path), push_to_hub=True, hub_model_id=REPO_ID, report_to="none", use_cpu=True
    )
    trainer = Trainer(model=model, args=arguments, processing_class=MultiLabelImageProcessor())
    trainer.push_to_hub()
    trainer_readme = [call for call in hub_calls if call[0] == "upload_folder"][-1][2]
    assert "trust_remote_code=True" not in trainer_readme

    save_model_card(tmp_path, trainer.model, metrics={"eval_mAP": 0.9}, dataset_name="voc2007", repo_id=REPO_ID)
    push_checkpoint_to_hub(tmp_path, REPO_ID)
    final_readme = hub_calls[-1][2]
    assert "trust_remote_code=True" in final_readme and "| mAP | 0.9 |" in final_readme
