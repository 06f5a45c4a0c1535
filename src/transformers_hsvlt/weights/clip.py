"""Building the CLIP-based classifiers of the family (PatchCT, PVLR) from a CLIP checkpoint or at random.

Not remote code (a saved checkpoint does not need it): the registry entries' `build` functions and the tokenizers.

- `build_clip_classifier(model_class, config_values, label_side, backbone)`: a new classifier for the label names
  of `label_side`; with `backbone` (a Hub id such as `openai/clip-vit-base-patch16` or a local directory holding a
  `CLIPModel` and its tokenizer) the towers and projections are CLIP's weights and the tokenizer is CLIP's; with
  `backbone=None` the towers are random and the tokenizer is `word_level_clip_tokenizer` over the prompt and the names.
  The tokenizer is attached to the model as `model.class_name_tokenizer`: save it next to the checkpoint
  (`tokenizer.save_pretrained(output_dir)`), since `set_class_names` needs it for other label names.
- `word_level_clip_tokenizer(texts)`: a tiny tokenizer built offline, whose words are those of `texts` (others map to
  `[UNK]`), framed by CLIP's start and end tokens.
"""

import math
import re
from collections.abc import Callable, Iterable, Mapping

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, CLIPModel, PreTrainedModel, PreTrainedTokenizerFast
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

from ..configuration_clip_towers import CLIPTowersConfig
from .state_dict import refusing_unsafe_pickles


PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "[PAD]", "[UNK]", "<|startoftext|>", "<|endoftext|>"

TINY_VISION_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 16,
}
"""A tiny random image tower (2 layers, width 64, 16-px patches; position embeddings for 32 px, interpolated). Trained
from scratch on the 64-px digit canvases, 16-px patches (about one digit each) learn far faster than 8-px ones."""

TINY_TEXT_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 24,
}
"""A tiny random text tower; its vocabulary size and special token ids come from the tokenizer."""

TINY_PROMPT_TEMPLATE = "{}"
"""The label prompt of the tiny presets: the bare name. A random frozen text tower gives nearly parallel embeddings to
prompts that share all but one word (mean cosine 0.99 between the ten digit names in "A photo of a {}.", 0.87 for
the bare names), which the cosine logits cannot separate; a pretrained CLIP text tower has no such problem."""

_WORDS = re.compile(r"\w+|[^\w\s]+")


def word_level_clip_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (lower-cased words and punctuation runs, as `tokenizers`' `Whitespace`) over the words of
    `texts`, each prompt framed by `<|startoftext|>` and `<|endoftext|>`. The end token has the largest id, as in
    CLIP's own vocabulary."""
    words = sorted({word for text in texts for word in _WORDS.findall(text.lower())})
    vocabulary = {token: index for index, token in enumerate([*words, PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN])}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocabulary[BOS_TOKEN]), (EOS_TOKEN, vocabulary[EOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN
    )


def text_config_for_tokenizer(text_config: Mapping, tokenizer) -> dict:
    """`text_config` with the vocabulary size and special token ids of `tokenizer`."""
    return {
        **text_config,
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_clip_classifier(
    model_class: type[PreTrainedModel], config_values: Mapping, label_side, backbone: str | None
) -> PreTrainedModel:
    """A new `model_class` classifier of the label names `label_side.names` (see the module docstring)."""
    names = list(label_side.names)
    values = {**config_values, "id2label": dict(enumerate(names))}
    clip = None
    if backbone is None:
        template = values.get("prompt_template", CLIPTowersConfig.prompt_template)
        tokenizer = word_level_clip_tokenizer([template.replace("{}", " "), *names])
        values["text_config"] = text_config_for_tokenizer(values.get("text_config") or {}, tokenizer)
    else:
        with refusing_unsafe_pickles(backbone):
            clip = CLIPModel.from_pretrained(backbone)
        tokenizer = AutoTokenizer.from_pretrained(backbone, trust_remote_code=False)
        values.update(
            vision_config=clip.config.vision_config.to_dict(),
            text_config=clip.config.text_config.to_dict(),
            projection_dim=clip.config.projection_dim,
        )
    model = model_class(model_class.config_class(**values))
    if clip is not None:
        load_clip_weights(model.base_model.towers, clip)
    model.set_class_names(names, tokenizer)
    model.class_name_tokenizer = tokenizer
    return model


def load_clip_weights(towers, clip: CLIPModel) -> None:
    """Copy a `CLIPModel`'s towers and projections into `towers` (a `CLIPTowers`); its `logit_scale` is not used."""
    state_dict = {key: value for key, value in clip.state_dict().items() if key != "logit_scale"}
    towers.load_state_dict(state_dict, strict=True)


def clip_classifier_builder(model_class: type[PreTrainedModel]) -> Callable[..., PreTrainedModel]:
    """The registry's `build(config_values, label_side, backbone)` for `model_class`."""

    def build(config_values: Mapping, label_side, backbone: str | None) -> PreTrainedModel:
        return build_clip_classifier(model_class, config_values, label_side, backbone)

    build.__doc__ = f"A new {model_class.__name__} (see `build_clip_classifier`)."
    return build


CLIP_IMAGE_PROCESSOR_DEFAULTS = {
    "resample": PILImageResampling.BICUBIC,
    "do_normalize": True,
    "image_mean": list(OPENAI_CLIP_MEAN),
    "image_std": list(OPENAI_CLIP_STD),
}
"""`MultiLabelImageProcessor` keyword arguments of CLIP's preprocessing: a bicubic squash to `image_size` (no crop), pixel
values in [0, 1] normalised with CLIP's mean and standard deviation."""

DEFAULT_BACKBONE = "openai/clip-vit-base-patch16"
"""The CLIP checkpoint of the paper-size presets (ViT-B/16, joint width 512)."""


def patch_token_map(hidden_state: torch.Tensor) -> torch.Tensor:
    """The patch tokens of an image-tower hidden state `(B, 1 + N, D)` as a square map `(B, D, sqrt(N), sqrt(N))`
    (the image processor squashes images to a square)."""
    num_patches = hidden_state.shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"patch_token_map needs a square patch grid, got {num_patches} patches.")
    return hidden_state[:, 1:].transpose(1, 2).unflatten(-1, (side, side))


def describe_clip_towers(config) -> list[tuple[str, object]]:
    """The model-card rows of the CLIP towers, the prompts and the loss."""
    vision, text = config.vision_config, config.text_config
    return [
        (
            "Image tower",
            f"CLIP ViT ({vision.num_hidden_layers} layers, width {vision.hidden_size}, patch {vision.patch_size}), "
            f"position embeddings interpolated from {vision.image_size} px",
        ),
        (
            "Text tower",
            f"CLIP text transformer ({text.num_hidden_layers} layers, width {text.hidden_size})"
            + (", frozen" if config.freeze_text_tower else ""),
        ),
        ("Joint space", f"{config.projection_dim}-d"),
        ("Label prompts", f"{config.prompt_template!r}; any label names work (open vocabulary)"),
        ("Input", f"{config.image_size} x {config.image_size} RGB, CLIP mean/std normalisation"),
        ("Loss", config.multilabel_loss),
        ("Reconstruction", "from the abstract and figure; not checked against the paper"),
    ]
