"""HSVLT (Hierarchical Scale-Aware Vision-Language Transformer, ACM MM 2023) and its sibling multi-label image
classifiers (MSRN, PatchCT, PVLR) for the Hugging Face ecosystem.

The remote-code modules of every architecture (`configuration_*`, `modeling_*`, the family's image processor, pipeline,
losses and CLIP towers) are siblings in this folder: each imports only torch, transformers and its siblings, so a
saved checkpoint runs where this package is not installed. Per-architecture toolkit code (registry entry, conversion,
label statistics, augmentation choices) lives in `hsvlt/`, `msrn/`, `patchct/` and `pvlr/`.

Importing the package registers every architecture with transformers' Auto classes, so that `AutoConfig`,
`AutoModel` (the base model), `AutoModelForImageClassification` (the classifier) and `AutoImageProcessor` load their
checkpoints with the installed code; without the package, saved checkpoints load through their remote code
(`trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_hsvlt import HSVLTConfig
from .configuration_msrn import MSRNConfig
from .configuration_patchct import PatchCTConfig
from .configuration_pvlr import PVLRConfig
from .image_processing_multilabel import HSVLTImageProcessor, MultiLabelImageProcessor
from .modeling_family import FamilyPreTrainedModel
from .modeling_hsvlt import (
    HSVLTForMultiLabelClassification,
    HSVLTModel,
    HSVLTModelOutput,
    HSVLTMultiLabelClassifierOutput,
    HSVLTPreTrainedModel,
)
from .modeling_msrn import (
    MSRNForMultiLabelClassification,
    MSRNModel,
    MSRNModelOutput,
    MSRNMultiLabelClassifierOutput,
    MSRNPreTrainedModel,
)
from .modeling_patchct import (
    PatchCTForMultiLabelClassification,
    PatchCTModel,
    PatchCTModelOutput,
    PatchCTMultiLabelClassifierOutput,
    PatchCTPreTrainedModel,
)
from .modeling_pvlr import (
    PVLRForMultiLabelClassification,
    PVLRModel,
    PVLRModelOutput,
    PVLRMultiLabelClassifierOutput,
    PVLRPreTrainedModel,
)


__version__ = "0.1.0"

AUTO_CLASSES = (
    (HSVLTConfig, HSVLTModel, HSVLTForMultiLabelClassification),
    (MSRNConfig, MSRNModel, MSRNForMultiLabelClassification),
    (PatchCTConfig, PatchCTModel, PatchCTForMultiLabelClassification),
    (PVLRConfig, PVLRModel, PVLRForMultiLabelClassification),
)
"""(config, base model, classifier) of every architecture, registered with the Auto classes on import."""

for _config_class, _base_model_class, _model_class in AUTO_CLASSES:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _base_model_class, exist_ok=True)
    AutoModelForImageClassification.register(_config_class, _model_class, exist_ok=True)
    AutoImageProcessor.register(_config_class, slow_image_processor_class=MultiLabelImageProcessor, exist_ok=True)

__all__ = [
    "FamilyPreTrainedModel",
    "HSVLTConfig",
    "HSVLTForMultiLabelClassification",
    "HSVLTImageProcessor",
    "MultiLabelImageProcessor",
    "HSVLTModel",
    "HSVLTModelOutput",
    "HSVLTMultiLabelClassifierOutput",
    "HSVLTPreTrainedModel",
    "MSRNConfig",
    "MSRNForMultiLabelClassification",
    "MSRNModel",
    "MSRNModelOutput",
    "MSRNMultiLabelClassifierOutput",
    "MSRNPreTrainedModel",
    "PVLRConfig",
    "PVLRForMultiLabelClassification",
    "PVLRModel",
    "PVLRModelOutput",
    "PVLRMultiLabelClassifierOutput",
    "PVLRPreTrainedModel",
    "PatchCTConfig",
    "PatchCTForMultiLabelClassification",
    "PatchCTModel",
    "PatchCTModelOutput",
    "PatchCTMultiLabelClassifierOutput",
    "PatchCTPreTrainedModel",
]
