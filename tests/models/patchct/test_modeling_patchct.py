"""PatchCT's model tester and the family contract."""

from clip_fixtures import NAMES, tiny_config, tiny_tokenizer

from models.contract import ModelContractTests, ModelTester, Normal, fan_in
from transformers_hsvlt import PatchCTForMultiLabelClassification


class CLIPTowersModelTester(ModelTester):
    """The tiny CLIP-based models of `clip_fixtures` (towers of width 32, 2 layers, 8-px patches at 32 px)."""

    image_size = 32
    attention_implementations = ("eager", "sdpa")

    def __init__(self):
        self.tokenizer = tiny_tokenizer()

    def get_config(self):
        return tiny_config(self.model_class.config_class, self.tokenizer)

    def prepare_model(self, model):
        model.set_class_names(NAMES, self.tokenizer)
        return model

    def documented_inits(self, config) -> dict:
        """CLIP's initialisation of the towers (attention and MLP projections: normal, std from the width and depth)
        and the joint-space projections normal with std `in_features ** -0.5`."""
        inits = {r"towers\.(visual|text)_projection\.weight$": Normal(lambda weight: fan_in(weight) ** -0.5)}
        for tower, tower_config in (("vision_model", config.vision_config), ("text_model", config.text_config)):
            width, depth = tower_config.hidden_size, tower_config.num_hidden_layers
            factor = tower_config.initializer_factor
            layers = rf"towers\.{tower}\.encoder\.layers\.\d+\."
            inits[layers + r"self_attn\.[qkv]_proj\.weight$"] = Normal(width**-0.5 * (2 * depth) ** -0.5 * factor)
            inits[layers + r"self_attn\.out_proj\.weight$"] = Normal(width**-0.5 * factor)
            inits[layers + r"mlp\.fc1\.weight$"] = Normal((2 * width) ** -0.5 * factor)
        return inits

    def grid(self, config) -> tuple[int, int]:
        side = self.image_size // config.vision_config.patch_size
        return side, side

    def hidden_state_shapes(self, config, batch_size):
        vision = config.vision_config
        tokens = 1 + self.grid(config)[0] * self.grid(config)[1]
        return [(batch_size, tokens, vision.hidden_size)] * (vision.num_hidden_layers + 1)


class PatchCTModelTester(CLIPTowersModelTester):
    model_class = PatchCTForMultiLabelClassification

    def attention_shapes(self, config, batch_size):
        """The backward navigator of each CT layer on the patch grid."""
        return [(batch_size, config.num_labels, *self.grid(config))] * len(config.ct_layers)


class TestPatchCT(ModelContractTests):
    tester = PatchCTModelTester()
