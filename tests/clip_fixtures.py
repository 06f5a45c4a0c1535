"""Tiny random CLIP-based classifiers (PatchCT, PVLR) and their tokenizer, built offline in milliseconds, and the
checks both models share (remote-code loading in a fresh process, one Trainer update)."""

import json
import os
import subprocess
import sys
import textwrap

from transformers_hsvlt.weights.clip import (
    TINY_TEXT_CONFIG,
    text_config_for_tokenizer,
    word_level_clip_tokenizer,
)


VISION_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
"""The test image tower: 8-px patches, position embeddings for 32 px (a 4x4 grid, interpolated for larger inputs)."""

NAMES = ["cat", "dog", "person"]
"""The labels of the tiny models."""

VOCABULARY_TEXTS = ["A photo of a .", "cat dog person car tree bird"]
"""The tiny tokenizer's words: the prompt template and a few names (others map to `[UNK]`)."""


def tiny_tokenizer():
    return word_level_clip_tokenizer(VOCABULARY_TEXTS)


def tiny_config(config_class, tokenizer, names=NAMES, **overrides):
    """A tiny config: towers of width 32 with 2 layers, 8-px patches, 32-px input, joint width 16."""
    values = dict(
        vision_config=dict(VISION_CONFIG),
        text_config=text_config_for_tokenizer(TINY_TEXT_CONFIG, tokenizer),
        projection_dim=16,
        image_size=32,
        initializer_range=0.2,
        id2label=dict(enumerate(names)),
    )
    values.update(overrides)
    return config_class(**values)


def tiny_model(model_class, tokenizer, names=NAMES, **overrides):
    """A tiny random classifier whose labels are `names` (set with its `set_class_names`)."""
    model = model_class(tiny_config(model_class.config_class, tokenizer, names, **overrides))
    model.set_class_names(names, tokenizer)
    return model.eval()


def clip_image_processor(size: int = 32):
    """The family's image processor with CLIP's normalisation and bicubic squash, as the registry entries set it."""
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

    from transformers_hsvlt import MultiLabelImageProcessor

    return MultiLabelImageProcessor(
        size={"height": size, "width": size},
        resample=PILImageResampling.BICUBIC,
        do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["transformers_hsvlt"] = None  # the package is unimportable: only the checkpoint's code may run
    import torch
    from PIL import Image
    from transformers import (
        AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoTokenizer, pipeline
    )

    image_path, other_names, results = sys.argv[1], sys.argv[2].split(","), []
    for checkpoint in sys.argv[3:]:
        config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
        base = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
        classifier = AutoModelForImageClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained(checkpoint, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)
        inputs = processor(Image.open(image_path), return_tensors="pt")
        with torch.no_grad():
            logits = classifier(**inputs).logits[0].tolist()
            other_inputs = classifier.class_name_inputs(other_names, tokenizer)
            other_logits = classifier(**inputs, **other_inputs).logits[0].tolist()
        predictions = pipeline("image-classification", model=checkpoint, trust_remote_code=True, top_k=None)(image_path)
        results.append({
            "config_class": type(config).__name__,
            "base_class": type(base).__name__,
            "classifier_class": type(classifier).__name__,
            "classifier_module": type(classifier).__module__,
            "frozen": sum(not parameter.requires_grad for parameter in classifier.parameters()),
            "logits": logits,
            "other_logits": other_logits,
            "pipeline": {item["label"]: item["score"] for item in predictions},
        })
    print(json.dumps(results))
    """
)


def run_checkpoints_in_fresh_process(checkpoints, image_path, other_names, tmp_path) -> list[dict]:
    """Load each checkpoint through the Auto classes and `pipeline` in one process where `transformers_hsvlt` cannot
    be imported, classify `image_path` with its labels and with `other_names`; return what `FRESH_PROCESS_SCRIPT`
    prints (one result per checkpoint)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(image_path), ",".join(other_names), *map(str, checkpoints)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
