"""MSRN (Multi-layered Semantic Representation Network, Qu et al., arXiv 2106.11596) as a member of the family.

`configuration_msrn` and `modeling_msrn` (with the shared `multilabel_losses`) are the remote code saved with every
checkpoint; `label_graph` (label statistics and the authors' `.pkl` files), `conversion` (ResNet weights and the
authors' checkpoints) and `architecture` (the registry entry) are toolkit code. See `docs/msrn.md`.
"""

from .configuration_msrn import MSRNConfig
from .modeling_msrn import (
    MSRNForMultiLabelClassification,
    MSRNModel,
    MSRNModelOutput,
    MSRNMultiLabelClassifierOutput,
    MSRNPreTrainedModel,
)


__all__ = [
    "MSRNConfig",
    "MSRNForMultiLabelClassification",
    "MSRNModel",
    "MSRNModelOutput",
    "MSRNMultiLabelClassifierOutput",
    "MSRNPreTrainedModel",
]
