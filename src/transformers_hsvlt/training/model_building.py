"""Building the model of a training run: the label side an architecture asks for, then its `build` function, or a
checkpoint adapted to the run's labels."""

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel

from ..checkpoints import load_model
from ..data.cooccurrence import label_cooccurrence
from ..label_embeddings import embed_label_names, load_label_embeddings
from ..registry import Architecture, LabelSide
from .arguments import ModelArguments, parse_config_overrides


def random_label_embeddings(num_labels: int, width: int, seed: int) -> np.ndarray:
    """Seeded Gaussian label embeddings with unit-variance entries: distinct, label-agnostic label vectors for when
    no text encoder is available (the model learns the label identities through its label projections)."""
    return np.random.default_rng(seed).standard_normal((num_labels, width)).astype(np.float32)


def label_embeddings_for(
    class_names: list[str], model_args: ModelArguments, seed: int, width: int | None = None
) -> np.ndarray:
    """The label embeddings requested by the arguments: a .npy file, a text encoder, or seeded random vectors. When
    `width` is given (a checkpoint's), a `.npy` file must have that many columns and random vectors get it."""
    if model_args.label_embeddings and model_args.text_encoder:
        raise ValueError("Give either --label_embeddings or --text_encoder, not both.")
    if model_args.label_embeddings:
        return load_label_embeddings(model_args.label_embeddings, len(class_names), expected_width=width)
    if model_args.text_encoder:
        return embed_label_names(class_names, encoder=model_args.text_encoder, pooling=model_args.label_pooling)
    return random_label_embeddings(len(class_names), width or model_args.random_label_embedding_size, seed)


def label_side_for(
    architecture: Architecture, class_names: list[str], model_args: ModelArguments, train_split: Dataset, seed: int
) -> LabelSide:
    """The label-side inputs `architecture.label_inputs` asks for."""
    label_side = LabelSide(names=list(class_names))
    if "embeddings" in architecture.label_inputs:
        label_side.embeddings = torch.from_numpy(label_embeddings_for(class_names, model_args, seed))
    if "cooccurrence" in architecture.label_inputs:
        if isinstance(train_split, IterableDataset):
            raise ValueError(
                f"{architecture.name} needs the label co-occurrence counts of the whole training split, which a "
                "stream cannot give before training: train without --streaming."
            )
        label_side.cooccurrence = label_cooccurrence(train_split, ignored_count_as=model_args.ignored_labels_count_as)
    return label_side


def config_values_for(architecture: Architecture, model_args: ModelArguments) -> dict:
    """The preset's config with the run's overrides (`--image_size`, `--loss`, `--config_overrides`); an override
    that is not a field of the architecture's config (a typo) is an error, not silently stored."""
    overrides = parse_config_overrides(model_args.config_overrides)
    unknown = sorted(set(overrides) - set(architecture.config_class().to_dict()))
    if unknown:
        raise ValueError(
            f"--config_overrides: {unknown} are not fields of {architecture.config_class.__name__} "
            f"(--model {architecture.name})."
        )
    values = {**architecture.presets[model_args.preset].config, **overrides}
    if model_args.image_size is not None:
        values["image_size"] = model_args.image_size
    if model_args.loss is not None:
        values["multilabel_loss"] = model_args.loss
    return values


def relabel_checkpoint(
    architecture: Architecture, model: PreTrainedModel, class_names: list[str], model_args: ModelArguments, seed: int
) -> None:
    """Give a loaded checkpoint the run's labels the way its architecture declares (`relabelling`)."""
    architecture.refuse_unless(
        architecture.relabelling is not None,
        f"--model_name_or_path {model_args.model_name_or_path}",
        f"models have a fixed label set ({model.config.num_labels} labels): fine-tune it on the same labels, or train "
        f"a new model on these (--model {architecture.name} without --model_name_or_path).",
    )
    if architecture.relabelling == "class_names":
        model.set_class_names(class_names, model.class_name_tokenizer)
        return
    if model_args.label_embeddings:
        embeddings = label_embeddings_for(class_names, model_args, seed, width=model.config.label_embedding_size)
        model.set_label_embeddings(torch.from_numpy(embeddings), class_names)
    else:
        model.set_label_embeddings(embeddings_by_name(model, class_names, model_args, seed), class_names)


def build_model(
    architecture: Architecture, model_args: ModelArguments, class_names: list[str], train_split: Dataset, seed: int
) -> PreTrainedModel:
    """A new classifier for `class_names` (its pretrained parts from `--backbone`), or `--model_name_or_path`
    adapted to them."""
    if model_args.model_name_or_path:
        model = load_model(model_args.model_name_or_path)
        if model.config.model_type != architecture.name:
            raise ValueError(
                f"--model_name_or_path {model_args.model_name_or_path} is a {model.config.model_type} checkpoint, "
                f"but --model is {architecture.name}."
            )
        # a given --label_embeddings file is checked against the checkpoint and used even for the same class names
        if model_args.label_embeddings or list(model.config.id2label.values()) != class_names:
            relabel_checkpoint(architecture, model, class_names, model_args, seed)
        return model
    label_side = label_side_for(architecture, class_names, model_args, train_split, seed)
    return architecture.build(config_values_for(architecture, model_args), label_side, model_args.backbone)


def embeddings_by_name(model: PreTrainedModel, class_names: list[str], model_args: ModelArguments, seed: int):
    """The label embeddings of a fine-tuned checkpoint for `class_names`: every label it was trained on keeps its
    trained vector (whatever its new position); only new labels get new ones (`--text_encoder` or seeded random
    vectors), and the command says how many."""
    trained = dict(zip(model.config.id2label.values(), model.hsvlt.label_embeddings.weight.detach()))
    new_names = [name for name in class_names if name not in trained]
    if new_names:
        # embedded after the trained names, so that seeded random vectors are new rows, not a trained label's again
        all_names = [*trained, *new_names]
        vectors = label_embeddings_for(all_names, model_args, seed, width=model.config.label_embedding_size)
        new_vectors = torch.from_numpy(vectors[len(trained) :]).to(model.hsvlt.label_embeddings.weight)
        trained.update(zip(new_names, new_vectors))
    shown = ", ".join(new_names[:5]) + (", ..." if len(new_names) > 5 else "")
    print(
        f"--model_name_or_path {model_args.model_name_or_path}: {len(class_names) - len(new_names)} of "
        f"{len(class_names)} labels keep their trained embeddings; {len(new_names)} new label(s) get new vectors"
        + (f" ({shown})." if new_names else ".")
    )
    return torch.stack([trained[name] for name in class_names])
