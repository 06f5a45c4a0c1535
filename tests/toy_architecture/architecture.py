"""The toy's registry entry: one preset, its model building, its heatmaps (the architecture's own maps only) and
the capabilities it declares (none: fixed labels, no converter, no ONNX export)."""

from transformers_hsvlt.registry import Architecture, Paper, Preset

from .configuration_toy import ToyConfig
from .modeling_toy import ToyModel


def build(config_values, label_side, backbone):
    return ToyModel(ToyConfig(id2label=dict(enumerate(label_side.names)), **config_values))


TOY = Architecture(
    name="toy-multilabel",
    config_class=ToyConfig,
    base_model_class=ToyModel,
    model_class=ToyModel,
    presets={
        "tiny": Preset(
            config={"hidden_size": 8},
            recipe=dict(learning_rate=1e-2, per_device_train_batch_size=8, num_train_epochs=1, seed=1),
            lr_schedule="linear",
        )
    },
    default_preset="tiny",
    small_preset="tiny",
    build=build,
    label_inputs=(),
    attention_maps=lambda outputs, config, stage: (
        outputs.hidden_states[0].mean(dim=1, keepdim=True).expand(-1, config.num_labels, -1, -1)
    ),
    heatmap_stages=lambda config: 1,
    describe=lambda config: [("Width", config.hidden_size)],
    paper=Paper(title="Toy", url="https://example.org/toy", bibtex="@misc{toy}", summary="A test-only model."),
)
