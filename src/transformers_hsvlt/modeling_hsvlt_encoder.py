"""HSVLT's encoder (remote code, imported by `modeling_hsvlt.py`): the ConvNeXt blocks with Interactive
Visual-Linguistic Attention (IVLA, `modeling_hsvlt_attention.py`) from the label features to the block's visual tokens
and the gated label residual, run in training by the hand-written autograd Functions of `modeling_hsvlt_backward.py`;
the stages, the encoder and its output."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import GELUActivation
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.convnext.modeling_convnext import ConvNextLayer, ConvNextLayerNorm
from transformers.utils import ModelOutput

from .configuration_hsvlt import HSVLTConfig
from .modeling_hsvlt_attention import (
    HSVLTLabelResidualGate,
    HSVLTTransposedWeights,
    HSVLTVisualLinguisticAttention,
    eager_inference_cache,
)
from .modeling_hsvlt_backward import HSVLTLabelUpdate, HSVLTVisualUpdate


@dataclass
class HSVLTModelOutput(ModelOutput):
    r"""
    Output of [`HSVLTModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_sizes[-1], height / 32, width / 32)`):
            Visual feature map of the last stage.
        label_features (`torch.FloatTensor` of shape `(batch_size, num_labels, hidden_sizes[-1])`):
            Label features after the last block's residual `t + m` (the last block has no label gate).
        multimodal_features (`tuple(torch.FloatTensor)`, one per stage, of shape `(batch_size, num_labels, hidden_sizes[i])`):
            Per-label multi-modal feature of the last block of every stage (the input of Cross-Scale Aggregation).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            Visual feature maps of the stem and of every stage, `(batch_size, hidden_sizes[i], height_i, width_i)`;
            IVLA never changes them, so they equal the ConvNeXt hidden states for the same weights.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            IVLA attention maps of every block, `(batch_size, num_attention_heads, num_labels, height_i * width_i)`:
            for each label, a softmax over the block's visual tokens (row-major over the feature map).
    """

    last_hidden_state: torch.FloatTensor | None = None
    label_features: torch.FloatTensor | None = None
    multimodal_features: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class HSVLTLayer(GradientCheckpointingLayer, ConvNextLayer):
    """
    One HSVLT block: transformers' ConvNeXt block on the visual map (`ConvNextLayer`'s modules: dwconv 7x7, LayerNorm,
    Linear 4x, GELU, Linear, layer scale, drop path, residual), then IVLA from the label features to the block's output
    tokens and the label update `t <- t + drop_path(m)`, `t <- t + gate(t) * t`. The visual map is not changed by IVLA.
    The last block of the model has no gate (`label_gate=False`): its gated label features would reach no output (the
    authors' model has one, never used; see `docs/hsvlt.md`).

    Layout: the visual map is kept as `(B, H, W, C)` (channels-last, contiguous), so that the tokens `(B, H*W, C)` and
    the rows of the pointwise layers `(B*H*W, C)` are views, and the label features as `(B*K, C)` rows. Each linear
    map is one `addmm`/`mm` on such rows. In eager inference the transposed weights are kept
    ([`HSVLTTransposedWeights`]) with IVLA's products; with gradients, one head and the folded form, the label side is
    one autograd node ([`HSVLTLabelUpdate`]). Either way the outputs equal the straightforward composition of the
    modules (transformers' `ConvNextLayer.forward`, IVLA, residual, gate) to float rounding.
    """

    def __init__(self, config: HSVLTConfig, dim: int, drop_path: float = 0.0, label_gate: bool = True):
        super().__init__(config, dim, drop_path)
        self.layernorm.eps = config.layer_norm_eps
        self.label_attention = HSVLTVisualLinguisticAttention(config, dim)
        self.label_gate = HSVLTLabelResidualGate(dim) if label_gate else None
        self.transposed_weights: HSVLTTransposedWeights | None = None

    def _kept_transposed_weights(self) -> dict[str, torch.Tensor]:
        """The block's [`HSVLTTransposedWeights`] views, recomputed if a weight got other storage."""
        attention, gate = self.label_attention, self.label_gate
        sources = {
            "pwconv1": self.pwconv1.weight,
            "pwconv2": self.pwconv2.weight,
            "query": attention.query.weight,
            "key": attention.key.weight,
            "value": attention.value.weight,
            "proj": attention.proj.weight,
            "vis_project": attention.vis_project.weight,
            "project_mm": attention.project_mm.weight,
        }
        if gate is not None:
            sources.update(gate_hidden=gate.hidden.weight, gate_output=gate.output.weight)
        if self.transposed_weights is None or not self.transposed_weights.is_current(sources):
            self.transposed_weights = HSVLTTransposedWeights.compute(sources)
        return self.transposed_weights.weights

    def _drop_path_active(self) -> bool:
        return self.training and not isinstance(self.drop_path, nn.Identity)

    def _visual_block(
        self, hidden_states: torch.Tensor, pwconv1_weight: torch.Tensor, pwconv2_weight: torch.Tensor
    ) -> torch.Tensor:
        """`ConvNextLayer.forward` on the `(B, H, W, C)` map, operation for operation (the same values, bit for bit),
        with the pointwise layers' weights given transposed."""
        features = self.dwconv(hidden_states.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        features = self.layernorm(features).view(-1, hidden_states.shape[-1])
        features = self.act(torch.addmm(self.pwconv1.bias, features, pwconv1_weight))
        features = torch.addmm(self.pwconv2.bias, features, pwconv2_weight).view(hidden_states.shape)
        if self.layer_scale_parameter is not None:
            features = self.layer_scale_parameter * features
        return hidden_states + self.drop_path(features)

    def _hand_written_backward(self) -> bool:
        """Whether the block may run as autograd Functions with hand-written backwards: outside eager inference
        (whose weight products save more), in eager mode without drop path or autocast. Also without gradients in
        training mode, so that the forward of reentrant activation checkpointing (run without gradients, then again
        with them) computes the same values both times."""
        return (
            eager_inference_cache(self.training) is None
            and not self._drop_path_active()
            and not torch.is_autocast_enabled(self.pwconv1.weight.device.type)
            and not (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())
        )

    def _fused_visual_update(self) -> bool:
        """Whether the ConvNeXt block runs as [`HSVLTVisualUpdate`] (GELU activation and layer scale, as in ConvNeXt)."""
        return (
            self._hand_written_backward()
            and isinstance(self.act, GELUActivation)
            and self.layer_scale_parameter is not None
            and self.dwconv.weight.shape[-1] == 7
        )

    def _fused_label_update(self, output_attentions: bool) -> bool:
        """Whether the label side runs as [`HSVLTLabelUpdate`]: where the block may (`_hand_written_backward`), with
        one head, without attention maps."""
        return self._hand_written_backward() and self.label_attention.num_heads == 1 and not output_attentions

    def forward(
        self, hidden_states: torch.Tensor, label_features: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            hidden_states: visual map `(B, H, W, C)`, contiguous.
            label_features: `(B*K, C)`.
        Returns:
            `(hidden_states, label_features, multimodal_features, attention_probs)`: the new visual map `(B, H, W, C)`,
            the updated label features and the multi-modal features `(B*K, C)`, and the attention map
            `(B, heads, K, H*W)` or `None`.
        """
        eager_inference = eager_inference_cache(self.training) == "cache"
        kept = self._kept_transposed_weights() if eager_inference else None
        if eager_inference:
            hidden_states = self._visual_block(hidden_states, kept["pwconv1"], kept["pwconv2"])
        elif self._fused_visual_update():
            update = HSVLTVisualUpdate.apply if torch.is_grad_enabled() else HSVLTVisualUpdate.compute
            hidden_states = update(
                hidden_states,
                self.layernorm.eps,
                self._kept_transposed_weights(),
                self.dwconv.weight,
                self.dwconv.bias,
                self.layernorm.weight,
                self.layernorm.bias,
                self.pwconv1.weight,
                self.pwconv1.bias,
                self.pwconv2.weight,
                self.pwconv2.bias,
                self.layer_scale_parameter,
            )
            if not torch.is_grad_enabled():
                hidden_states = hidden_states[0]
        else:  # autograd, compilers and exporters see the weights themselves
            hidden_states = self._visual_block(hidden_states, self.pwconv1.weight.t(), self.pwconv2.weight.t())
        batch_size, height, width, dim = hidden_states.shape
        visual_tokens = hidden_states.view(batch_size, height * width, dim)
        attention, gate = self.label_attention, self.label_gate
        if self._fused_label_update(output_attentions):
            update = HSVLTLabelUpdate.apply if torch.is_grad_enabled() else HSVLTLabelUpdate.compute
            label_features, multimodal_features = update(
                label_features,
                visual_tokens,
                attention.scale,
                self._kept_transposed_weights(),
                attention._fold(label_features.shape[0] // batch_size, height * width, dim, with_products=False),
                attention.query.weight,
                attention.key.weight,
                attention.value.weight,
                attention.proj.weight,
                attention.proj.bias,
                attention.vis_project.weight,
                attention.vis_project.bias,
                attention.project_mm.weight,
                attention.project_mm.bias,
                None if gate is None else gate.hidden.weight,
                None if gate is None else gate.output.weight,
            )[:2]
            return hidden_states, label_features, multimodal_features, None
        multimodal_features, attention_probs = attention.forward_flat(
            label_features, visual_tokens, output_attentions, kept["project_mm"] if eager_inference else None
        )
        if self._drop_path_active():  # per image, as on the visual map
            dropped = self.drop_path(multimodal_features.view(batch_size, -1, dim))
            label_features = label_features + dropped.view(-1, dim)
        else:
            label_features = label_features + multimodal_features
        if gate is not None:
            gate_weights = (kept["gate_hidden"], kept["gate_output"]) if eager_inference else ()
            label_features = gate(label_features, *gate_weights)
        return hidden_states, label_features, multimodal_features, attention_probs


class HSVLTStage(nn.Module):
    """A stage: downsampling (LayerNorm + Conv2d k=2 s=2, except for the first stage), the projection of the incoming
    label features to the stage width (the authors' `langs.{i}`), and `depth` [`HSVLTLayer`]s, the last one without
    label gate unless `last_label_gate` (false for the model's last stage)."""

    def __init__(
        self,
        config: HSVLTConfig,
        in_channels: int,
        out_channels: int,
        in_label_size: int,
        downsample: bool,
        drop_path_rates,
        last_label_gate: bool = True,
    ):
        super().__init__()
        self.downsampling_layer = nn.ModuleList(
            [
                ConvNextLayerNorm(in_channels, eps=config.layer_norm_eps, data_format="channels_first"),
                nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2),
            ]
            if downsample
            else []
        )
        self.label_projection = nn.Linear(in_label_size, out_channels)
        gates = [True] * (len(drop_path_rates) - 1) + [last_label_gate]
        self.layers = nn.ModuleList(
            [HSVLTLayer(config, out_channels, rate, gate) for rate, gate in zip(drop_path_rates, gates)]
        )

    def forward(self, hidden_states: torch.Tensor, label_features: torch.Tensor, output_attentions: bool = False):
        """Visual map `(B, H, W, C)` and label features `(B*K, C)` in the layouts of [`HSVLTLayer`]. Returns
        `(hidden_states, label_features, multimodal_features of the last block, attention maps per block)`."""
        if self.downsampling_layer:
            hidden_states = hidden_states.permute(0, 3, 1, 2)
            for layer in self.downsampling_layer:
                hidden_states = layer(hidden_states)
            hidden_states = hidden_states.permute(0, 2, 3, 1).contiguous()  # a view when the map is channels-last
        label_features = self.label_projection(label_features)
        attentions = ()
        for layer in self.layers:
            hidden_states, label_features, multimodal_features, attention_probs = layer(
                hidden_states, label_features, output_attentions
            )
            if output_attentions:
                attentions = attentions + (attention_probs,)
        return hidden_states, label_features, multimodal_features, attentions


class HSVLTEncoder(nn.Module):
    """The four stages of the hierarchy, with stochastic depth rising linearly over all blocks."""

    def __init__(self, config: HSVLTConfig):
        super().__init__()
        drop_path_rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").split(
            config.depths
        )
        in_sizes = [config.hidden_sizes[0]] + list(config.hidden_sizes[:-1])
        in_label_sizes = [config.label_embedding_size] + list(config.hidden_sizes[:-1])
        self.stages = nn.ModuleList(
            HSVLTStage(
                config,
                in_size,
                out_size,
                label_size,
                downsample=index > 0,
                drop_path_rates=rates.tolist(),
                last_label_gate=index < config.num_stages - 1,
            )
            for index, (in_size, out_size, label_size, rates) in enumerate(
                zip(in_sizes, config.hidden_sizes, in_label_sizes, drop_path_rates)
            )
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        label_features: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> HSVLTModelOutput:
        """Visual map `(B, C, H, W)` (stored channels-last, as the stem's LayerNorm returns it) and label features
        `(B, K, label_embedding_size)`; the stages run on the layouts of [`HSVLTLayer`]."""
        batch_size, num_labels = label_features.shape[:2]
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        hidden_states = hidden_states.permute(0, 2, 3, 1).contiguous()  # a view when the map is channels-last
        label_features = label_features.reshape(batch_size * num_labels, -1)
        multimodal_features = ()
        for stage in self.stages:
            hidden_states, label_features, stage_multimodal, stage_attentions = stage(
                hidden_states, label_features, output_attentions
            )
            multimodal_features = multimodal_features + (stage_multimodal.view(batch_size, num_labels, -1),)
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states.permute(0, 3, 1, 2),)
            if output_attentions:
                all_attentions = all_attentions + stage_attentions
        hidden_states = hidden_states.permute(0, 3, 1, 2)
        label_features = label_features.view(batch_size, num_labels, -1)
        return HSVLTModelOutput(
            last_hidden_state=hidden_states,
            label_features=label_features,
            multimodal_features=multimodal_features,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
