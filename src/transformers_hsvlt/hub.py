"""
Sharing family checkpoints on the Hugging Face Hub: the folder to upload (weights, config, remote code, image
processor and the model card of `transformers_hsvlt.model_card`), its checks, and the upload.

A shared checkpoint is remote code: its `config.json` has an `auto_map` and the folder holds the modules it names
(for HSVLT `configuration_hsvlt.py`, `modeling_hsvlt.py`, plus `image_processing_multilabel.py` for the image
processor), so that anyone can load it with `trust_remote_code=True` without installing this package.

```python
>>> from transformers_hsvlt.hub import prepare_for_push, push_checkpoint_to_hub

>>> prepare_for_push(model, image_processor, "hsvlt-s-voc2007", base_model="facebook/convnext-small-384-22k-1k",
...                  dataset_name="voc2007", metrics={"mAP": 95.1})
>>> push_checkpoint_to_hub("hsvlt-s-voc2007", "my-user/hsvlt-s-voc2007")
```

`model.push_to_hub(repo_id)` and `image_processor.push_to_hub(repo_id)` also make a loadable repository (the
remote-code modules travel with them), but the card they upload is transformers' generic one unless the repository
already has a card.

With `Trainer`: `Trainer.push_to_hub` (also called by `Trainer.save_model` when `push_to_hub=True`) writes and uploads
its own card. Call `transformers_hsvlt.model_card.save_model_card(output_dir, ...)` after training and upload the
folder with `push_checkpoint_to_hub(output_dir, repo_id)` last, so that the repository ends with the HSVLT card.
"""

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import HfApi
from transformers import PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import pipeline_multilabel
from .image_processing_multilabel import MultiLabelImageProcessor
from .model_card import save_model_card
from .pipeline_multilabel import FAMILY_PIPELINES


def prepare_for_push(
    model: PreTrainedModel,
    image_processor: MultiLabelImageProcessor | None,
    output_dir: str | os.PathLike,
    **card_kwargs,
) -> list[str]:
    """
    Write everything a family repository on the Hub holds into `output_dir`: the weights (`model.safetensors`), the
    config with its `auto_map`, the remote-code modules, `preprocessor_config.json` and the model card.

    Args:
        model (`PreTrainedModel` of a registered architecture):
            The model to share.
        image_processor ([`MultiLabelImageProcessor`], *optional*):
            Its image processor; `None` saves the default one (the authors' preprocessing).
        output_dir (`str` or `os.PathLike`):
            The folder to write (created if needed).
        card_kwargs:
            The keyword arguments of [`create_model_card`].

    Returns:
        `list[str]`: the names of the files in `output_dir`, sorted.
    """
    output_dir = Path(output_dir)
    model.config.custom_pipelines = FAMILY_PIPELINES
    model.save_pretrained(output_dir)
    (image_processor if image_processor is not None else MultiLabelImageProcessor()).save_pretrained(output_dir)
    if model.class_name_tokenizer is not None:  # open-vocabulary models (see `FamilyPreTrainedModel`)
        model.class_name_tokenizer.save_pretrained(output_dir)
    shutil.copy(pipeline_multilabel.__file__, output_dir / Path(pipeline_multilabel.__file__).name)
    save_model_card(output_dir, model, **card_kwargs)
    _check_checkpoint_dir(output_dir)
    return sorted(path.name for path in output_dir.iterdir() if path.is_file())


def push_checkpoint_to_hub(
    checkpoint_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload HSVLT model",
):
    """
    Upload an HSVLT checkpoint folder (e.g. written by [`prepare_for_push`], or a training output directory after
    [`save_model_card`]) to the Hub repository `repo_id`, creating the repository if needed. Trainer's
    `checkpoint-*` sub-folders and `_*` files are not uploaded, as in `Trainer.push_to_hub`.

    Args:
        checkpoint_dir (`str` or `os.PathLike`):
            The folder; it must hold the files listed by [`prepare_for_push`].
        repo_id (`str`):
            `"user-or-org/name"`.
        private (`bool`, *optional*, defaults to `False`):
            Create the repository as private (no effect on an existing repository).
        token (`str`, *optional*):
            A Hub token with write access; defaults to the one saved by `hf auth login`.
        commit_message (`str`, *optional*):
            The commit message.

    Returns:
        The `huggingface_hub.CommitInfo` of the upload.

    Raises:
        `ValueError`: a file needed to load the checkpoint with `trust_remote_code=True` is missing.
    """
    checkpoint_dir = Path(checkpoint_dir)
    _check_checkpoint_dir(checkpoint_dir)
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=checkpoint_dir,
        commit_message=commit_message,
        ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"],
    )


def _check_checkpoint_dir(checkpoint_dir: Path) -> None:
    """Raise a `ValueError` naming the files a shareable HSVLT checkpoint folder lacks."""
    if not checkpoint_dir.is_dir():
        raise ValueError(f"Checkpoint directory {checkpoint_dir} does not exist.")
    required = ["config.json", "preprocessor_config.json", "README.md"]
    missing = [name for name in required if not (checkpoint_dir / name).is_file()]
    if not any((checkpoint_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors")
    if "config.json" not in missing:
        config = json.loads((checkpoint_dir / "config.json").read_text())
        if not config.get("auto_map"):
            missing.append("the auto_map entry of config.json")
        pipelines = {task: entry["impl"] for task, entry in (config.get("custom_pipelines") or {}).items()}
        references = {**(config.get("auto_map") or {}), **pipelines}
        missing += [name for name in remote_code_files(references) if not (checkpoint_dir / name).is_file()]
    if missing:
        raise ValueError(
            f"{checkpoint_dir} is not a complete checkpoint for the Hub: missing {', '.join(missing)}. Write it "
            "with transformers_hsvlt.hub.prepare_for_push (or save the model and image processor with "
            "save_pretrained and the card with save_model_card)."
        )


def remote_code_files(auto_map: Mapping[str, str]) -> list[str]:
    """The module files an `auto_map` names (`{"AutoModel": "modeling_x.XModel"}` -> `["modeling_x.py"]`)."""
    references = [value for values in auto_map.values() for value in ([values] if isinstance(values, str) else values)]
    return sorted({f"{reference.split('.')[0]}.py" for reference in references if reference})


__all__ = [
    "prepare_for_push",
    "push_checkpoint_to_hub",
    "remote_code_files",
]
