"""MSRN's label side (remote code, imported by `modeling_msrn.py`): the label graph built from the label-name vectors
and the label co-occurrence counts (buffers of the checkpoint), its graph attention layers and the DiffPool grouping.
See `modeling_msrn.py` for the equations."""

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_msrn import MSRNConfig


def normalized_adjacency(
    label_counts: torch.Tensor, label_pair_counts: torch.Tensor, threshold: float, reweight: float
) -> torch.Tensor:
    """The authors' `gen_A` + `gen_adj` in float64: `Â = D Aᵀ D` from the label counts (see the module docstring).
    A label never seen (count 0) has no edges."""
    counts = label_counts.double()
    conditional = label_pair_counts.double() / counts.clamp(min=1)[:, None]
    # The threshold as a float64 tensor: ONNX export would store a Python float as a float32 constant, and
    # conditionals equal to the threshold (0.4 = 2 / 5) would fall below it.
    edges = (conditional >= torch.tensor(threshold, dtype=torch.float64, device=counts.device)).double()
    adjacency = edges * reweight / (edges.sum(0, keepdim=True) + 1e-6)
    adjacency = adjacency + torch.eye(len(counts), dtype=torch.float64, device=counts.device)
    degree = torch.diag(adjacency.sum(1).pow(-0.5))
    return (adjacency @ degree).T @ degree


class MSRNLabelGraph(nn.Module):
    """
    The label side of the checkpoint, as persistent buffers: `label_embeddings` `(num_labels, label_embedding_size)`
    (e.g. GloVe vectors of the class names), and, as integers (exact whatever the model's dtype), `label_counts`
    `(num_labels,)` (training images holding each label) and `label_pair_counts` `(num_labels, num_labels)` (images
    holding both; the authors' diagonal is 0). `adjacency()` is the normalised adjacency `Â`, computed once and again
    only when a count buffer is replaced or changed (moved, loaded, set).
    """

    def __init__(self, config: MSRNConfig):
        super().__init__()
        self.threshold = config.adjacency_threshold
        self.reweight = config.adjacency_reweight
        self.register_buffer("label_embeddings", torch.zeros(config.num_labels, config.label_embedding_size))
        self.register_buffer("label_counts", torch.zeros(config.num_labels, dtype=torch.long))
        self.register_buffer("label_pair_counts", torch.zeros(config.num_labels, config.num_labels, dtype=torch.long))
        self._cached_adjacency = None

    def _cache_key(self) -> tuple | None:
        """The count buffers themselves (identity: replaced or moved buffers are new tensors), their in-place version
        counters (set or loaded in place), and the embeddings' dtype; None when versions are not tracked (tensors
        made in inference mode): then the adjacency is recomputed every time."""
        try:
            versions = (self.label_counts._version, self.label_pair_counts._version)
        except RuntimeError:
            return None
        return (self.label_counts, self.label_pair_counts, *versions, self.label_embeddings.dtype)

    def adjacency(self) -> torch.Tensor:
        """`Â`, `(num_labels, num_labels)`, in the dtype of `label_embeddings`."""
        key = self._cache_key()
        cached_key = None if self._cached_adjacency is None else self._cached_adjacency[0]
        if key is None or cached_key is None or not _same_key(key, cached_key):
            with torch.no_grad():
                adjacency = normalized_adjacency(
                    self.label_counts, self.label_pair_counts, self.threshold, self.reweight
                )
            self._cached_adjacency = (key, adjacency.to(self.label_embeddings.dtype))
        return self._cached_adjacency[1]


def _same_key(key: tuple, cached_key: tuple) -> bool:
    """Tensors compared by identity, everything else by value."""
    return all((a is b) if torch.is_tensor(a) else a == b for a, b in zip(key, cached_key, strict=True))


class MSRNGraphAttentionLayer(nn.Module):
    """
    A graph attention layer with a residual (the authors' `GraphAttentionLayer`, no bias, no dropout):
    `h = x W`, `e_ij = leakyrelu([h_i ‖ h_j] a)` (computed as `h_i a_1 + h_j a_2`), `e_ij = -1e12` where `Â_ij <= 0`,
    `α = softmax_j(e)`, `ELU(α h + h)`. `weight` is `(in_features, out_features)`, `attention_weight` `(2 *
    out_features, 1)` (the authors' `W` and `a`).
    """

    def __init__(self, in_features: int, out_features: int, negative_slope: float):
        super().__init__()
        self.negative_slope = negative_slope
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.attention_weight = nn.Parameter(torch.empty(2 * out_features, 1))

    def forward(self, features: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """(N, in_features), (N, N) -> (N, out_features)"""
        hidden = features @ self.weight
        source_weight, target_weight = self.attention_weight.chunk(2)
        scores = F.leaky_relu(hidden @ source_weight + (hidden @ target_weight).T, self.negative_slope)
        masked = max(-1e12, torch.finfo(scores.dtype).min)
        scores = torch.where(adjacency > 0, scores, torch.full_like(scores, masked))
        return F.elu(torch.softmax(scores, dim=1) @ hidden + hidden)


class MSRNGroupPooling(nn.Module):
    """One DiffPool layer (the authors' `BatchedDiffPool`): `Z = embed(x)`, `S = softmax over groups of assign(x)`,
    `G = Sᵀ Z`. Returns `G` `(num_groups, semantic_size)` and `S` `(num_labels, num_groups)`."""

    def __init__(self, config: MSRNConfig):
        super().__init__()
        size, slope = config.semantic_size, config.graph_negative_slope
        self.embed = MSRNGraphAttentionLayer(size, size, slope)
        self.assign = MSRNGraphAttentionLayer(size, config.num_groups, slope)

    def forward(self, features: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assignments = torch.softmax(self.assign(features, adjacency), dim=-1)
        return assignments.T @ self.embed(features, adjacency), assignments
