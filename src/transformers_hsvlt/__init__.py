"""HSVLT (Hierarchical Scale-Aware Vision-Language Transformer, ACM MM 2023) for the Hugging Face ecosystem.

Importing the package registers HSVLT with transformers' Auto classes, so that `AutoConfig`, `AutoModel`,
`AutoModelForImageClassification` and `AutoImageProcessor` load HSVLT checkpoints with the installed code; without the
package, saved checkpoints load through their remote code (`trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_hsvlt import HSVLTConfig
from .image_processing_hsvlt import HSVLTImageProcessor
from .modeling_hsvlt import (
    HSVLTForMultiLabelClassification,
    HSVLTModel,
    HSVLTModelOutput,
    HSVLTMultiLabelClassifierOutput,
    HSVLTPreTrainedModel,
)


__version__ = "0.1.0"

AutoConfig.register(HSVLTConfig.model_type, HSVLTConfig, exist_ok=True)
AutoModel.register(HSVLTConfig, HSVLTModel, exist_ok=True)
AutoModelForImageClassification.register(HSVLTConfig, HSVLTForMultiLabelClassification, exist_ok=True)
AutoImageProcessor.register(HSVLTConfig, slow_image_processor_class=HSVLTImageProcessor, exist_ok=True)

__all__ = [
    "HSVLTConfig",
    "HSVLTForMultiLabelClassification",
    "HSVLTImageProcessor",
    "HSVLTModel",
    "HSVLTModelOutput",
    "HSVLTMultiLabelClassifierOutput",
    "HSVLTPreTrainedModel",
]
