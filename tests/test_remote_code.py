"""A saved checkpoint is self-contained: it loads through transformers' Auto classes and `pipeline` in a fresh process
in which `transformers_hsvlt` cannot be imported. `AutoModel` gives the base model (`HSVLTModel`, weights taken from the
classifier checkpoint's `hsvlt.*`), `AutoModelForImageClassification` the classifier."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_config
from PIL import Image

from transformers_hsvlt import HSVLTForMultiLabelClassification, MultiLabelImageProcessor


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["transformers_hsvlt"] = None  # make the package unimportable: only the checkpoint's code may run
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

    checkpoint, image_path = sys.argv[1], sys.argv[2]
    try:
        import transformers_hsvlt  # noqa: F401
        raise SystemExit("transformers_hsvlt is importable")
    except ImportError:
        pass
    try:
        AutoModel.from_pretrained(checkpoint, trust_remote_code=False)
        refused = False
    except ValueError as error:
        refused = "trust_remote_code" in str(error)
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
    model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    classifier = AutoModelForImageClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    image = Image.open(image_path)
    with torch.no_grad():
        base_outputs = model(**processor(image, return_tensors="pt"))
        classifier_logits = classifier(**processor(image, return_tensors="pt")).logits
    predictions = pipeline("image-classification", model=checkpoint, trust_remote_code=True, top_k=None)(image_path)
    print(json.dumps({
        "refused_without_trust": refused,
        "config_class": type(config).__name__,
        "model_class": type(model).__name__,
        "model_module": type(model).__module__,
        "classifier_class": type(classifier).__name__,
        "classifier_module": type(classifier).__module__,
        "processor_class": type(processor).__name__,
        "label_features": base_outputs.label_features[0].tolist(),
        "classifier_logits": classifier_logits[0].tolist(),
        "pipeline": predictions,
    }))
    """
)


@pytest.mark.slow
def test_checkpoint_loads_in_fresh_process_without_package(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(config).eval()
    torch.nn.init.normal_(model.classifier.bias)  # distinct scores, so that the ranking is meaningful
    processor = MultiLabelImageProcessor(size={"height": 64, "width": 64})
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    image_path = tmp_path / "image.png"
    Image.fromarray((torch.rand(50, 70, 3) * 255).byte().numpy()).save(image_path)
    with torch.no_grad():
        expected_outputs = model(**processor(Image.open(image_path), return_tensors="pt"))
        expected_label_features = model.hsvlt(**processor(Image.open(image_path), return_tensors="pt")).label_features[
            0
        ]
    expected = expected_outputs.logits[0]
    assert (checkpoint / "multilabel_losses.py").exists()  # the shared loss travels with the model code

    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(checkpoint), str(image_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**_clean_env(), "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["refused_without_trust"]
    assert output["config_class"] == "HSVLTConfig"
    assert output["model_class"] == "HSVLTModel"
    assert output["classifier_class"] == "HSVLTForMultiLabelClassification"
    assert not output["model_module"].startswith("transformers_hsvlt")
    assert not output["classifier_module"].startswith("transformers_hsvlt")
    assert output["processor_class"] == "MultiLabelImageProcessor"
    torch.testing.assert_close(torch.tensor(output["label_features"]), expected_label_features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(output["classifier_logits"]), expected, rtol=1e-5, atol=1e-5)
    scores = {item["label"]: item["score"] for item in output["pipeline"]}
    expected_scores = {config.id2label[index]: score for index, score in enumerate(torch.sigmoid(expected).tolist())}
    assert scores.keys() == expected_scores.keys()
    for label, score in expected_scores.items():
        assert abs(scores[label] - score) < 1e-5  # sigmoid (multi-label), not softmax


def _clean_env():
    import os

    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
