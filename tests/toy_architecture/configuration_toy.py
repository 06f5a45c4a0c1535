"""The toy's config: the family's shared fields (`FamilyConfigMixin`) and one field of its own."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from transformers_hsvlt.configuration_family import FamilyConfigMixin


@strict
class ToyConfig(FamilyConfigMixin, PreTrainedConfig):
    r"""
    A test-only classifier: one strided convolution and a linear head.

    Args:
        hidden_size (`int`, *optional*, defaults to 8):
            Channels of the convolution.
        image_size (`int`, *optional*, defaults to 32):
            Input resolution; the other shared fields are documented in [`FamilyConfigMixin`].
    """

    model_type = "toy-multilabel"

    hidden_size: int = 8
    image_size: int = 32

    def validate_architecture(self):
        super().validate_architecture()
        if self.hidden_size < 1:
            raise ValueError(f"ToyConfig.hidden_size must be >= 1, got {self.hidden_size}.")
