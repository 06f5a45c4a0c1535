"""The family's `image-classification` pipeline (remote code, saved with every checkpoint of ours).

transformers' `ImageClassificationPipeline` reads paths and URLs with `transformers.image_utils.load_image`, which
converts to RGB with Pillow: 16-bit images are clipped (values around 255) and transparency becomes black. The
toolkit (`hsvlt-predict`, `hsvlt-eval`, training) scales 16-bit images to 8 bits and composites transparency onto
white. This pipeline reads images the toolkit's way, so that `pipeline("image-classification", model=CHECKPOINT,
trust_remote_code=True)` and `hsvlt-predict CHECKPOINT` give the same scores for the same file. Scores are the
sigmoid of each label's logit (multi-label), as for every `multi_label_classification` model.

Open-vocabulary checkpoints (PatchCT, PVLR: their class names go through a text tower, and they carry the tokenizer
of their class names) also score label names given at call time, as transformers' zero-shot pipelines do:
`classifier("photo.jpg", candidate_labels=["cat", "dog", "bicycle"])`, each with its own sigmoid score (not a
softmax over the candidates: several can be present).

Decisions: by default the pipeline returns every label at or above its threshold, most confident first: the
checkpoint's calibrated thresholds (`config.label_thresholds`, see `hsvlt-calibrate`), 0.5 for a label without one.
`threshold=` takes a number or a mapping from label names to thresholds; `top_k=` alone returns the `top_k` most
likely labels whatever their scores (`top_k=None`: every label), as transformers' pipeline does; with both, at most
`top_k` labels at or above their thresholds. Candidate labels take the same arguments.
"""

import numpy as np
import torch
from transformers.pipelines import ImageClassificationPipeline

from .image_conversion_multilabel import convert_image_to_rgb, open_image


NOT_GIVEN = object()
"""The default of `top_k` in `postprocess`: not given (the thresholds decide)."""


class MultiLabelImageClassificationPipeline(ImageClassificationPipeline):
    """`ImageClassificationPipeline` whose images (paths, URLs, PIL images) are read as the toolkit reads them, with
    `candidate_labels` for open-vocabulary checkpoints."""

    _load_tokenizer = None  # optional: open-vocabulary checkpoints carry the tokenizer of their class names

    def _sanitize_parameters(self, candidate_labels=None, threshold=None, **kwargs):
        top_k_given = "top_k" in kwargs
        top_k = kwargs.pop("top_k", None)
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if top_k_given:
            postprocess["top_k"] = top_k
        if threshold is not None:
            postprocess["threshold"] = threshold
        if candidate_labels is not None:
            names = candidate_labels.split(",") if isinstance(candidate_labels, str) else list(candidate_labels)
            forward["candidate_labels"] = postprocess["candidate_labels"] = [name.strip() for name in names]
        return preprocess, forward, postprocess

    def preprocess(self, image, timeout=None):
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            image = convert_image_to_rgb(open_image(image, timeout=timeout))
        return super().preprocess(image, timeout=timeout)

    def _forward(self, model_inputs, candidate_labels=None):
        if candidate_labels is None:
            return super()._forward(model_inputs)
        if not self.model.supports_class_names or self.tokenizer is None:
            raise ValueError(
                f"candidate_labels needs an open-vocabulary model with its tokenizer (PatchCT, PVLR); this "
                f"{self.model.config.model_type} model has one output per trained label: {list(self.model.config.id2label.values())}."
            )
        class_inputs = self.model.class_name_inputs(candidate_labels, self.tokenizer)
        return self.model(**model_inputs, **{name: value.to(self.model.device) for name, value in class_inputs.items()})

    def postprocess(
        self, model_outputs, function_to_apply=None, top_k=NOT_GIVEN, threshold=None, candidate_labels=None
    ):
        if function_to_apply is not None and candidate_labels is None:
            return super().postprocess(
                model_outputs,
                function_to_apply,
                top_k=5 if top_k is NOT_GIVEN else top_k or self.model.config.num_labels,
            )
        if threshold is None and top_k is NOT_GIVEN:
            threshold = "auto"
        (labels,) = self.image_processor.post_process_multi_label(
            model_outputs["logits"][:1].float(),
            threshold=threshold,
            top_k=None if top_k is NOT_GIVEN else top_k,
            id2label=candidate_labels,
            config=self.model.config,
        )
        return [{"label": label["label"], "score": label["score"]} for label in labels]


FAMILY_PIPELINES = {
    "image-classification": {
        "impl": "pipeline_multilabel.MultiLabelImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "tf": [],
        "type": "image",
    }
}
"""The `custom_pipelines` entry of a saved config that makes `pipeline("image-classification")` use this class."""
