"""MSRN's model tester and the family contract."""

import torch
from reference_msrn import random_cooccurrence, tiny_msrn_config

from models.contract import ModelContractTests, ModelTester, Normal, Uniform, fan_in, fan_out
from transformers_hsvlt import MSRNForMultiLabelClassification
from transformers_hsvlt.registry import LabelCooccurrence


LEVEL_STRIDES = (16, 32, 64)
"""The strides of MSRN's three visual levels (28, 14 and 7 positions a side at 448 px)."""


class MSRNModelTester(ModelTester):
    """The tiny MSRN of `reference_msrn` (ResNet widths 16-128, 5 labels, 2 groups) at 64 px, with a label graph."""

    model_class = MSRNForMultiLabelClassification
    image_size = 64
    random_buffers = ("label_embeddings",)

    def get_config(self):
        return tiny_msrn_config()

    def prepare_model(self, model):
        config = model.config
        counts, pair_counts = random_cooccurrence(config.num_labels)
        embeddings = torch.randn(config.num_labels, config.label_embedding_size)
        model.set_label_graph(embeddings, LabelCooccurrence(counts, pair_counts))
        return model

    def documented_inits(self, config) -> dict:
        """The buffer convolutions Kaiming normal (fan-out, ReLU), the head PyTorch's default (uniform,
        +-fan_in^-1/2), the graph attention weights Xavier uniform with gain `graph_init_gain`."""
        gain = config.graph_init_gain
        return {
            r"level_buffers\.\d+\.weight$": Normal(lambda weight: (2 / fan_out(weight)) ** 0.5),
            r"head\.(hidden|output)\.weight$": Uniform(lambda weight: fan_in(weight) ** -0.5),
            r"label_semantics\.\d+\.weight$": Uniform(lambda weight: gain * (6 / sum(weight.shape)) ** 0.5),
        }

    def hidden_state_shapes(self, config, batch_size):
        """The three projected levels."""
        sides = [self.image_size // stride for stride in LEVEL_STRIDES]
        return [(batch_size, config.semantic_size, side, side) for side in sides]

    def attention_shapes(self, config, batch_size):
        """Each label's attention at every level."""
        sides = [self.image_size // stride for stride in LEVEL_STRIDES]
        return [(batch_size, config.num_labels, side, side) for side in sides]


class TestMSRN(ModelContractTests):
    tester = MSRNModelTester()
