"""HSVLT's model tester and the family contract."""

import torch
from conftest import tiny_config

from models.contract import ModelContractTests, ModelTester, Uniform, fan_in
from transformers_hsvlt import HSVLTForMultiLabelClassification


class HSVLTModelTester(ModelTester):
    """The tiny HSVLT of `conftest` (4 stages, widths 8-32, 5 labels) at 64 px."""

    model_class = HSVLTForMultiLabelClassification
    image_size = 64
    random_buffers = ("weight",)
    """The label embeddings (`HSVLTLabelEmbeddings.weight`), standard normal until set."""
    attention_implementations = ("eager", "sdpa")
    """IVLA's attention: explicit (`eager`) or one `scaled_dot_product_attention` (one head, folded, inference)."""

    def get_config(self):
        return tiny_config(fold_label_attention=True)  # the folded form is where `sdpa` applies

    def prepare_model(self, model):
        config = model.config
        model.set_label_embeddings(torch.randn(config.num_labels, config.label_embedding_size), config.id2label)
        return model

    def documented_inits(self, config) -> dict:
        """IVLA's two per-label projections and the head: PyTorch's default, uniform in +-fan_in^-1/2."""
        return {
            r"label_attention\.(vis_project|project_mm)\.weight$": Uniform(lambda weight: fan_in(weight) ** -0.5),
        }

    def stage_sides(self, config):
        return [self.image_size // config.patch_size // 2**stage for stage in range(len(config.depths))]

    def hidden_state_shapes(self, config, batch_size):
        """The stem's feature map, then every stage's."""
        sides = self.stage_sides(config)
        shapes = [(batch_size, config.hidden_sizes[0], sides[0], sides[0])]
        return shapes + [(batch_size, width, side, side) for width, side in zip(config.hidden_sizes, sides)]

    def attention_shapes(self, config, batch_size):
        """IVLA's attention of every block: per head, each label over the positions of its stage."""
        return [
            (batch_size, config.num_attention_heads, config.num_labels, side * side)
            for side, depth in zip(self.stage_sides(config), config.depths)
            for _ in range(depth)
        ]


class TestHSVLT(ModelContractTests):
    tester = HSVLTModelTester()
