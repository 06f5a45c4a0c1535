"""The toy's model, on the family's one base class (`FamilyPreTrainedModel`)."""

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from transformers_hsvlt.modeling_family import FamilyPreTrainedModel
from transformers_hsvlt.multilabel_losses import multilabel_loss

from .configuration_toy import ToyConfig


class ToyModel(FamilyPreTrainedModel):
    config_class = ToyConfig
    main_input_name = "pixel_values"
    accepts_loss_kwargs = False

    def __init__(self, config: ToyConfig):
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


ToyConfig.register_for_auto_class()
ToyModel.register_for_auto_class("AutoModelForImageClassification")
