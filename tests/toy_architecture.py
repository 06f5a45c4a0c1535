"""A test-only toy architecture: one strided convolution and a linear head, registered from the tests to prove that
a new family member needs only its own model code and one registry entry to go through the five commands."""

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from transformers_hsvlt.multilabel_losses import multilabel_loss
from transformers_hsvlt.registry import Architecture, Paper, Preset


class ToyConfig(PreTrainedConfig):
    model_type = "toy-multilabel"

    def __init__(self, hidden_size=8, image_size=32, multilabel_loss="bce", **kwargs):
        self.hidden_size = hidden_size
        self.image_size = image_size
        self.multilabel_loss = multilabel_loss
        self.asl_gamma_negative, self.asl_gamma_positive, self.asl_clip = 4.0, 0.0, 0.05
        super().__init__(**kwargs)


class ToyModel(PreTrainedModel):
    config_class = ToyConfig
    main_input_name = "pixel_values"
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        self.features = nn.Conv2d(3, config.hidden_size, kernel_size=4, stride=4)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, pixel_values, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        feature_map = torch.relu(self.features(pixel_values))
        logits = self.classifier(feature_map.mean(dim=(2, 3)))
        loss = multilabel_loss(logits, labels, self.config) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=(feature_map,) if output_hidden_states else None
        )


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

ToyConfig.register_for_auto_class()
ToyModel.register_for_auto_class("AutoModelForImageClassification")
