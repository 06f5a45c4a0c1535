"""HSVLT for the Hugging Face ecosystem."""

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

__all__ = [
    "HSVLTConfig",
    "HSVLTForMultiLabelClassification",
    "HSVLTImageProcessor",
    "HSVLTModel",
    "HSVLTModelOutput",
    "HSVLTMultiLabelClassifierOutput",
    "HSVLTPreTrainedModel",
]
