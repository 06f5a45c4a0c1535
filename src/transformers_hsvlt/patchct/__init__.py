"""PatchCT (ICCV 2023) as a member of the family: reconstruction from the abstract and figure; not checked against
the paper. See `docs/patchct-pvlr.md`.

Importing this package registers the model with transformers' Auto classes (`AutoConfig`, `AutoModel` -> the base
model, `AutoModelForImageClassification` -> the classifier); without it, saved checkpoints load through their remote
code (`trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_patchct import PatchCTConfig
from .modeling_patchct import (
    PatchCTForMultiLabelClassification,
    PatchCTModel,
    PatchCTModelOutput,
    PatchCTMultiLabelClassifierOutput,
    PatchCTPreTrainedModel,
)


AutoConfig.register(PatchCTConfig.model_type, PatchCTConfig, exist_ok=True)
AutoModel.register(PatchCTConfig, PatchCTModel, exist_ok=True)
AutoModelForImageClassification.register(PatchCTConfig, PatchCTForMultiLabelClassification, exist_ok=True)

__all__ = [
    "PatchCTConfig",
    "PatchCTForMultiLabelClassification",
    "PatchCTModel",
    "PatchCTModelOutput",
    "PatchCTMultiLabelClassifierOutput",
    "PatchCTPreTrainedModel",
]
