"""PVLR (arXiv 2401.17881) as a member of the family: reconstruction from the abstract and figure; not checked
against the paper. See `docs/patchct-pvlr.md`.

Importing this package registers the model with transformers' Auto classes (`AutoConfig`, `AutoModel` -> the base
model, `AutoModelForImageClassification` -> the classifier); without it, saved checkpoints load through their remote
code (`trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_pvlr import PVLRConfig
from .modeling_pvlr import (
    PVLRForMultiLabelClassification,
    PVLRModel,
    PVLRModelOutput,
    PVLRMultiLabelClassifierOutput,
    PVLRPreTrainedModel,
)


AutoConfig.register(PVLRConfig.model_type, PVLRConfig, exist_ok=True)
AutoModel.register(PVLRConfig, PVLRModel, exist_ok=True)
AutoModelForImageClassification.register(PVLRConfig, PVLRForMultiLabelClassification, exist_ok=True)

__all__ = [
    "PVLRConfig",
    "PVLRForMultiLabelClassification",
    "PVLRModel",
    "PVLRModelOutput",
    "PVLRMultiLabelClassifierOutput",
    "PVLRPreTrainedModel",
]
