"""PyTorch MSRN model (Multi-layered Semantic Representation Network, Qu et al., arXiv 2106.11596).

A ResNet whose layer2, layer3 and layer4 outputs give three visual levels, label semantics from the label-name vectors
and the label co-occurrence graph, and a per-channel semantic attention of every label (local semantics) and every
label group (global semantics) over every level. With `C` labels, `K` groups, `c = semantic_size` and `X` the
`(C, label_embedding_size)` label-name vectors:

- adjacency: `P = pair_counts / counts[:, None]`, `A = (P >= t)`, `A = A * p / (A.sum(0) + 1e-6) + I`,
  `D = diag(A.sum(1) ** -0.5)`, `Â = D Aᵀ D` (`MSRNLabelGraph`);
- local semantics: `E = GAT(GAT(label_projection(X), Â), Â)`, `(C, c)`, each graph attention layer being
  `h = x W`, `α = softmax_j(leakyrelu([h_i ‖ h_j] a))` over the edges of `Â`, `ELU(α h + h)` (`MSRNGraphAttentionLayer`);
- global semantics (one DiffPool layer): `Z = GAT_embed(relu(E))`, `S = softmax_K(GAT_assign(relu(E)))`, `G = Sᵀ Z`,
  `(K, c)` (`MSRNGroupPooling`);
- visual levels: `f1 = maxpool2(buffer1(layer2))`, `f2 = maxpool2(buffer2(layer3))`, `f3 = maxpool2(layer4)`, each
  projected to `c` channels, `P_s` with tokens `(B, h*w, c)` in row-major order;
- semantic attention per level, label (or group) `k` and channel: `w[:, k, ch] = softmax over positions of
  P_s[:, ch] * E[k, ch]`, `x[k, ch] = Σ_positions w P_s[:, ch]` (`MSRNSemanticAttention`);
- head: `logits = fc2(leaky_relu(fc1(tanh([x_labels ; x_groups]).flatten(1))))` over the `(C + K) * 3c` values,
  label-major (`MSRNHead`).

The loss adds the group loss `group_loss_weight * Σ_i ||E_i - G[argmax_k S_ik]||_2` to the multi-label loss.
The label-name vectors and the label counts are buffers of the checkpoint (`MSRNLabelGraph`); the normalised
adjacency is computed from them once and cached.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import ResNetModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_msrn import MSRNConfig
from .modeling_family import FamilyPreTrainedModel, check_finite_pixels
from .modeling_msrn_graph import MSRNGraphAttentionLayer, MSRNGroupPooling, MSRNLabelGraph
from .multilabel_losses import multilabel_loss


NUM_LEVELS = 3
"""Semantic levels: the outputs of ResNet stages 2, 3 and 4."""


@dataclass
class MSRNModelOutput(ModelOutput):
    r"""
    Output of [`MSRNModel`].

    Args:
        label_representations (`torch.FloatTensor` of shape `(batch_size, num_labels, 3 * semantic_size)`):
            What every label's semantic attention gathered, levels 1, 2, 3 concatenated (the authors' `label_dr`).
        group_representations (`torch.FloatTensor` of shape `(batch_size, num_groups, 3 * semantic_size)`):
            The same for the label groups (`group_dr`).
        label_features (`torch.FloatTensor` of shape `(num_labels, semantic_size)`):
            Local semantics `E`, the label features after the two graph attention layers.
        group_features (`torch.FloatTensor` of shape `(num_groups, semantic_size)`):
            Global semantics `G = Sᵀ Z`.
        group_assignments (`torch.FloatTensor` of shape `(num_labels, num_groups)`):
            Soft assignment `S` of the labels to the groups (a softmax over the groups).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            The three projected visual levels `P_s`, `(batch_size, semantic_size, height_s, width_s)` (28, 14 and 7
            pixels wide at 448x448): the maps the semantic attention reads.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            Per level, `(batch_size, num_labels, height_s, width_s)`: each label's attention over the positions,
            averaged over the `semantic_size` channels (every channel's attention sums to 1 over the positions, so
            each map does too). The attention itself is per channel, `(batch_size, height_s * width_s, num_labels,
            semantic_size)`, too large to return (see `MSRNSemanticAttention`).
        group_attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The same for the groups, `(batch_size, num_groups, height_s, width_s)`.
    """

    label_representations: torch.FloatTensor | None = None
    group_representations: torch.FloatTensor | None = None
    label_features: torch.FloatTensor | None = None
    group_features: torch.FloatTensor | None = None
    group_assignments: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    group_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MSRNMultiLabelClassifierOutput(ModelOutput):
    r"""
    Output of [`MSRNForMultiLabelClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            The multi-label loss (`config.multilabel_loss`) plus `group_loss`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            One logit per label; `sigmoid(logits)` are the multi-label probabilities.
        group_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            `group_loss_weight * Σ_i ||E_i - G[argmax_k S_ik]||_2` (independent of the images).
        hidden_states, attentions, group_attentions:
            As in [`MSRNModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    group_loss: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    group_attentions: tuple[torch.FloatTensor, ...] | None = None


class MSRNSemanticAttention(nn.Module):
    r"""
    The per-channel semantic attention of one level, for `N` semantic vectors `s` (labels and groups) over the tokens
    `v` `(B, L, c)` of a level: `w[b, l, n, ch] = softmax over l of (v[b, l, ch] * s[n, ch])` and
    `x[b, n, ch] = Σ_l w[b, l, n, ch] v[b, l, ch]`. The softmax runs over the positions separately for every channel
    (an element-wise product, not a dot product), so `w` holds `B * L * N * c` values: 128 MB per image at level 1
    of COCO (784 positions, 80 labels, 512 channels).

    With `config.attention_label_chunk_size`, the semantic vectors are taken that many at a time: the result is the
    same, the intermediate is `chunk / N` as large, and when gradients are needed each chunk is recomputed during the
    backward pass (`torch.utils.checkpoint`) instead of being kept, so training memory is bounded as well.
    """

    def __init__(self, config: MSRNConfig):
        super().__init__()
        self.chunk_size = config.attention_label_chunk_size

    @staticmethod
    def attend(
        tokens: torch.Tensor, semantics: torch.Tensor, with_maps: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, L, c)`, `(N, c)` -> `x` `(B, N, c)` and, with `with_maps`, the channel-averaged attention `(B, N, L)`."""
        tokens = tokens.unsqueeze(2)  # (B, L, 1, c)
        weights = torch.softmax(tokens * semantics, dim=1)  # (B, L, N, c)
        return (weights * tokens).sum(1), weights.mean(-1).transpose(1, 2) if with_maps else None

    def forward(
        self, tokens: torch.Tensor, semantics: torch.Tensor, with_maps: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.chunk_size is None or self.chunk_size >= semantics.shape[0]:
            return self.attend(tokens, semantics, with_maps)
        recompute = torch.is_grad_enabled() and (tokens.requires_grad or semantics.requires_grad)
        results = [
            checkpoint(self.attend, tokens, chunk, with_maps, use_reentrant=False)
            if recompute
            else self.attend(tokens, chunk, with_maps)
            for chunk in semantics.split(self.chunk_size)
        ]
        attended, maps = zip(*results)
        return torch.cat(attended, dim=1), torch.cat(maps, dim=1) if with_maps else None


class MSRNHead(nn.Module):
    """`fc2(leaky_relu(fc1(tanh(z).flatten(1))))` over the label and group representations `z` `(B, C + K, 3c)`,
    flattened label-major (all levels of label 0, then of label 1, ...). `hidden` and `output` are the authors'
    `fc1` and `fc2`."""

    def __init__(self, config: MSRNConfig):
        super().__init__()
        in_features = (config.num_labels + config.num_groups) * NUM_LEVELS * config.semantic_size
        self.negative_slope = config.head_negative_slope
        self.hidden = nn.Linear(in_features, config.head_hidden_size)
        self.output = nn.Linear(config.head_hidden_size, config.num_labels)

    def forward(self, representations: torch.Tensor) -> torch.Tensor:
        hidden = F.leaky_relu(self.hidden(torch.tanh(representations).flatten(1)), self.negative_slope)
        return self.output(hidden)


class MSRNPreTrainedModel(FamilyPreTrainedModel):
    """Weight initialisation and the common interface of MSRN models."""

    config_class = MSRNConfig
    config: MSRNConfig
    base_model_prefix = "msrn"
    remote_code_auto_map = {
        "AutoConfig": "configuration_msrn.MSRNConfig",
        "AutoModel": "modeling_msrn.MSRNModel",
        "AutoModelForImageClassification": "modeling_msrn.MSRNForMultiLabelClassification",
    }
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    accepts_loss_kwargs = False
    _no_split_modules = ["ResNetConvLayer", "ResNetShortCut"]

    @torch.no_grad()
    def _init_weights(self, module):
        """The authors' initialisation: the ResNet (initialised by transformers' ResNet: Kaiming normal, fan-out)
        and the buffer convolutions as the ResNet's convolutions (their biases, the projections and the linear
        layers as PyTorch's defaults), the graph attention weights Xavier-uniform (gain `graph_init_gain`),
        label-name vectors standard normal and label counts zero (no edges) until `set_label_graph`."""
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(module.weight[0].numel())
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, MSRNGraphAttentionLayer):
            init.xavier_uniform_(module.weight, gain=self.config.graph_init_gain)
            init.xavier_uniform_(module.attention_weight, gain=self.config.graph_init_gain)
        elif isinstance(module, MSRNLabelGraph):
            init.normal_(module.label_embeddings, mean=0.0, std=1.0)
            init.zeros_(module.label_counts)
            init.zeros_(module.label_pair_counts)
        elif isinstance(module, MSRNModel):
            for buffer_conv in module.level_buffers:
                init.kaiming_normal_(buffer_conv.weight, mode="fan_out", nonlinearity="relu")


class MSRNModel(MSRNPreTrainedModel):
    """MSRN without the head: the label and group representations of every level, the label and group semantics,
    and (on request) the projected levels and the attention maps."""

    def __init__(self, config: MSRNConfig):
        super().__init__(config)
        channels = config.level_channels
        self.backbone = ResNetModel(config.backbone_config)
        self.level_buffers = nn.ModuleList(nn.Conv2d(width, width, kernel_size=1) for width in channels[:-1])
        self.level_pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.level_projections = nn.ModuleList(
            nn.Conv2d(width, config.semantic_size, kernel_size=1) for width in channels
        )
        self.label_graph = MSRNLabelGraph(config)
        self.label_projection = nn.Linear(config.label_embedding_size, config.label_projection_size)
        sizes = (config.label_projection_size, config.graph_hidden_size, config.semantic_size)
        self.label_semantics = nn.ModuleList(
            MSRNGraphAttentionLayer(size_in, size_out, config.graph_negative_slope)
            for size_in, size_out in zip(sizes, sizes[1:])
        )
        self.group_pooling = MSRNGroupPooling(config)
        self.semantic_attention = MSRNSemanticAttention(config)
        self.post_init()

    def visual_levels(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The three tapped maps `f_s` before projection: `(B, 512, 28, 28)`, `(B, 1024, 14, 14)` and `(B, 2048, 7,
        7)` for ResNet-101 at 448x448."""
        stages = self.backbone(pixel_values, output_hidden_states=True).hidden_states[-NUM_LEVELS:]
        buffered = [buffer_conv(stage) for buffer_conv, stage in zip(self.level_buffers, stages)] + [stages[-1]]
        return [self.level_pool(level) for level in buffered]

    def semantics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Local semantics `E` `(C, c)`, global semantics `G` `(K, c)` and the group assignments `S` `(C, K)`."""
        adjacency = self.label_graph.adjacency()
        label_features = self.label_projection(self.label_graph.label_embeddings)
        for layer in self.label_semantics:
            label_features = layer(label_features, adjacency)
        group_features, group_assignments = self.group_pooling(F.relu(label_features), adjacency)
        return label_features, group_features, group_assignments

    def _check_pixel_values(self, pixel_values: torch.Tensor | None) -> None:
        channels = self.config.backbone_config.num_channels
        if pixel_values is None or pixel_values.ndim != 4 or pixel_values.shape[1] != channels:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise ValueError(f"`pixel_values` must have shape (batch_size, {channels}, height, width), got {shape}.")
        check_finite_pixels(pixel_values)
        if min(pixel_values.shape[-2:]) < 64:
            raise ValueError(
                f"`pixel_values` height and width must be at least 64 (the coarsest level is the input / 64), got "
                f"{tuple(pixel_values.shape[-2:])}."
            )

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MSRNModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images as produced by the image processor (448x448, ImageNet mean/std normalisation).
            output_attentions (`bool`, *optional*):
                Return the channel-averaged attention maps of every label and group at every level.
            output_hidden_states (`bool`, *optional*):
                Return the three projected visual levels.
        """
        self._check_pixel_values(pixel_values)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        label_features, group_features, group_assignments = self.semantics()
        semantics = torch.cat([label_features, group_features])
        projected_levels, attended, attention_maps = [], [], []
        for projection, level in zip(self.level_projections, self.visual_levels(pixel_values)):
            projected = projection(level)
            tokens = projected.flatten(2).transpose(1, 2)
            level_attended, level_attention = self.semantic_attention(tokens, semantics, output_attentions)
            projected_levels.append(projected)
            attended.append(level_attended)
            if output_attentions:
                attention_maps.append(level_attention.unflatten(-1, projected.shape[-2:]))
        representations = torch.cat(attended, dim=-1)
        num_labels = label_features.shape[0]
        return MSRNModelOutput(
            label_representations=representations[:, :num_labels],
            group_representations=representations[:, num_labels:],
            label_features=label_features,
            group_features=group_features,
            group_assignments=group_assignments,
            hidden_states=tuple(projected_levels) if output_hidden_states else None,
            attentions=tuple(maps[:, :num_labels] for maps in attention_maps) if output_attentions else None,
            group_attentions=tuple(maps[:, num_labels:] for maps in attention_maps) if output_attentions else None,
        )

    @torch.no_grad()
    def set_label_graph(self, label_embeddings, cooccurrence, names=None) -> None:
        """
        Install the label side: the label-name vectors `(num_labels, label_embedding_size)` and the label statistics
        `cooccurrence` (anything with `counts` `(num_labels,)` and `pair_counts` `(num_labels, num_labels)`, e.g. a
        `transformers_hsvlt.registry.LabelCooccurrence`), and optionally the label names (`config.id2label`). The
        number of labels is the model's (it sizes the head).
        """
        graph = self.label_graph
        num_labels, width = graph.label_embeddings.shape
        values = {
            "label_embeddings": (torch.as_tensor(label_embeddings), (num_labels, width)),
            "label_counts": (torch.as_tensor(cooccurrence.counts), (num_labels,)),
            "label_pair_counts": (torch.as_tensor(cooccurrence.pair_counts), (num_labels, num_labels)),
        }
        for name, (value, shape) in values.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"set_label_graph: {name} must have shape {shape}, got {tuple(value.shape)}.")
            if not torch.isfinite(value.double()).all():
                raise ValueError(f"set_label_graph: {name} holds NaN or infinite values.")
        for name in ("label_counts", "label_pair_counts"):
            value = values[name][0].double()
            if (value < 0).any() or (value != value.round()).any():
                raise ValueError(f"set_label_graph: {name} must be whole numbers >= 0 (image counts).")
        if names is not None:
            names = list(names)
            if len(names) != num_labels or len(set(names)) != num_labels:
                raise ValueError(f"set_label_graph: names must be {num_labels} distinct label names, got {len(names)}.")
            self.config.id2label = dict(enumerate(names))
            self.config.label2id = {name: index for index, name in enumerate(names)}
        for name, (value, _) in values.items():
            buffer = getattr(graph, name)
            setattr(graph, name, value.to(device=buffer.device, dtype=buffer.dtype).clone())


class MSRNForMultiLabelClassification(MSRNPreTrainedModel):
    """MSRN with its head: one logit per label, for multi-label classification (sigmoid)."""

    keys_to_ignore_at_inference = ["group_loss"]

    def __init__(self, config: MSRNConfig):
        super().__init__(config)
        self.msrn = MSRNModel(config)
        self.head = MSRNHead(config)
        self.post_init()

    def group_loss(self, outputs: MSRNModelOutput) -> torch.Tensor:
        """`group_loss_weight * Σ_i ||E_i - G[argmax_k S_ik]||_2` (plain L2 distances, not squared)."""
        nearest_group = outputs.group_features[outputs.group_assignments.argmax(dim=1)]
        distances = torch.linalg.vector_norm(outputs.label_features - nearest_group, dim=1)
        return self.config.group_loss_weight * distances.sum()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MSRNMultiLabelClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                As in [`MSRNModel`].
            labels (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
                1 for a present label, 0 for an absent one, -1 to leave the entry out of the loss; soft targets in
                [0, 1] are accepted. (The authors count VOC "difficult" labels as present in training.)
            output_attentions, output_hidden_states:
                As in [`MSRNModel`].
        """
        outputs = self.msrn(
            pixel_values, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        logits = self.head(torch.cat([outputs.label_representations, outputs.group_representations], dim=1))
        loss = group_loss = None
        if labels is not None:
            group_loss = self.group_loss(outputs)
            loss = multilabel_loss(logits, labels, self.config) + group_loss
        return MSRNMultiLabelClassifierOutput(
            loss=loss,
            logits=logits,
            group_loss=group_loss,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            group_attentions=outputs.group_attentions,
        )

    def set_label_graph(self, label_embeddings, cooccurrence, names=None) -> None:
        """As [`MSRNModel.set_label_graph`]."""
        self.msrn.set_label_graph(label_embeddings, cooccurrence, names)


MSRNConfig.register_for_auto_class()
MSRNModel.register_for_auto_class("AutoModel")
MSRNForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "MSRNForMultiLabelClassification",
    "MSRNModel",
    "MSRNModelOutput",
    "MSRNMultiLabelClassifierOutput",
    "MSRNPreTrainedModel",
]
