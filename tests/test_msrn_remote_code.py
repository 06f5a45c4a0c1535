"""A saved MSRN checkpoint is self-contained: Auto classes and `pipeline` load it through remote code in a fresh
process in which `transformers_hsvlt` cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from reference_msrn import random_cooccurrence, single_thread, tiny_msrn_config  # noqa: F401 (single_thread: an autouse fixture)

from transformers_hsvlt import MSRNForMultiLabelClassification
from transformers_hsvlt.image_processing_multilabel import MultiLabelImageProcessor
from transformers_hsvlt.msrn.architecture import ARCHITECTURE
from transformers_hsvlt.registry import LabelCooccurrence


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["transformers_hsvlt"] = None  # only the checkpoint's code may run
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

    checkpoint, image_path = sys.argv[1], sys.argv[2]
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
    model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    classifier = AutoModelForImageClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    inputs = processor(Image.open(image_path), return_tensors="pt")
    with torch.no_grad():
        base = model(**inputs, output_attentions=True)
        outputs = classifier(**inputs, labels=torch.ones(1, config.num_labels))
    predictions = pipeline("image-classification", model=checkpoint, trust_remote_code=True, top_k=None)(image_path)
    print(json.dumps({
        "classes": [type(config).__name__, type(model).__name__, type(classifier).__name__, type(processor).__name__],
        "module": type(classifier).__module__,
        "label_representations": list(base.label_representations.shape),
        "attention": list(base.attentions[0].shape),
        "logits": outputs.logits[0].tolist(),
        "loss": outputs.loss.item(),
        "pipeline": predictions,
    }))
    """
)


@pytest.mark.slow
def test_checkpoint_runs_without_the_package(tmp_path):
    config = tiny_msrn_config(5, 2)
    model = MSRNForMultiLabelClassification(config).eval()
    torch.nn.init.normal_(model.head.output.bias)  # distinct scores
    counts, pair_counts = random_cooccurrence(5)
    model.set_label_graph(torch.randn(5, 12), LabelCooccurrence(counts, pair_counts), ["a", "b", "c", "d", "e"])
    processor = MultiLabelImageProcessor(size={"height": 64, "width": 64}, **ARCHITECTURE.image_processor_defaults)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    assert (checkpoint / "multilabel_losses.py").is_file() and not (checkpoint / "multilabel_losses.py").is_symlink()
    image_path = tmp_path / "image.png"
    Image.fromarray((torch.rand(50, 70, 3) * 255).byte().numpy()).save(image_path)
    inputs = processor(Image.open(image_path), return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs, labels=torch.ones(1, 5))

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(checkpoint), str(image_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["classes"] == [
        "MSRNConfig",
        "MSRNModel",
        "MSRNForMultiLabelClassification",
        "MultiLabelImageProcessor",
    ]
    assert not output["module"].startswith("transformers_hsvlt")
    assert output["label_representations"] == [1, 5, 72] and output["attention"] == [1, 5, 4, 4]
    torch.testing.assert_close(torch.tensor(output["logits"]), expected.logits[0], rtol=1e-5, atol=1e-5)
    assert abs(output["loss"] - expected.loss.item()) < 1e-5
    scores = {item["label"]: item["score"] for item in output["pipeline"]}
    expected_scores = dict(zip("abcde", torch.sigmoid(expected.logits[0]).tolist()))
    assert scores.keys() == expected_scores.keys()
    for label, score in expected_scores.items():
        assert abs(scores[label] - score) < 1e-5  # sigmoid (multi-label), not softmax
