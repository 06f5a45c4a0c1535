"""PVLR's model tester and the family contract."""

from models.contract import ModelContractTests, Normal
from models.patchct.test_modeling_patchct import CLIPTowersModelTester
from transformers_hsvlt import PVLRForMultiLabelClassification


class PVLRModelTester(CLIPTowersModelTester):
    model_class = PVLRForMultiLabelClassification

    def documented_inits(self, config) -> dict:
        """As the CLIP-based models, and the context vectors normal with `config.context_init_std`."""
        return {**super().documented_inits(config), r"context_prompt\.context$": Normal(config.context_init_std)}

    def attention_shapes(self, config, batch_size):
        """The attention of the labels over the patch grid, per head, in every Dual-Modal Attention layer."""
        shape = (batch_size, config.num_attention_heads, config.num_labels, *self.grid(config))
        return [shape] * config.num_dma_layers


class TestPVLR(ModelContractTests):
    tester = PVLRModelTester()
