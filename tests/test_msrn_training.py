"""MSRN under a plain `transformers.Trainer`, and its registry entry."""

import numpy as np
import pytest
import torch
from conftest import assert_same_update, parameters_after_one_update
from reference_msrn import random_cooccurrence, single_thread, tiny_msrn_config  # noqa: F401 (single_thread: an autouse fixture)

from transformers_hsvlt import MSRNForMultiLabelClassification
from transformers_hsvlt.data import build_digit_canvases, get_class_names
from transformers_hsvlt.data.cooccurrence import label_cooccurrence
from transformers_hsvlt.msrn.architecture import ARCHITECTURE
from transformers_hsvlt.registry import LabelCooccurrence, LabelSide, get_architecture, register


class FrozenBatchNorm2d(torch.nn.BatchNorm2d):
    """A BatchNorm that stays in eval mode: batch statistics would differ between b and 2b images."""

    def train(self, mode: bool = True):
        return super().train(False)


def trained_parameters(batch_size: int, accumulation_steps: int, tmp_path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = MSRNForMultiLabelClassification(tiny_msrn_config(5, 2))
    counts, pair_counts = random_cooccurrence(5)
    model.set_label_graph(torch.randn(5, 12), LabelCooccurrence(counts, pair_counts))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.__class__ = FrozenBatchNorm2d
    generator = torch.Generator().manual_seed(1)
    examples = [
        {
            "pixel_values": torch.randn(3, 64, 64, generator=generator),
            "labels": (torch.rand(5, generator=generator) < 0.4).float(),
        }
        for _ in range(4)
    ]
    return parameters_after_one_update(model, examples, batch_size, accumulation_steps, tmp_path / f"run{batch_size}")


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    accumulated = trained_parameters(2, 2, tmp_path)
    whole = trained_parameters(4, 1, tmp_path)
    torch.manual_seed(0)
    initial = MSRNForMultiLabelClassification(tiny_msrn_config(5, 2)).state_dict()
    assert not torch.allclose(whole["head.hidden.weight"], initial["head.hidden.weight"])  # the step moved it
    assert not torch.allclose(whole["msrn.label_semantics.0.weight"], initial["msrn.label_semantics.0.weight"])
    assert_same_update(initial, accumulated, whole)


def test_registry_entry_builds_the_tiny_preset_on_digits():
    register(ARCHITECTURE)
    architecture = get_architecture("msrn")
    assert architecture.preset_for(None, "digits") == "tiny" and architecture.preset_for(None, "coco") == "msrn"
    data = build_digit_canvases(40, 8, seed=0)
    names = get_class_names(data)
    embeddings = torch.from_numpy(np.random.default_rng(0).standard_normal((len(names), 300)).astype(np.float32))
    side = LabelSide(names=names, embeddings=embeddings, cooccurrence=label_cooccurrence(data))
    model = architecture.build(dict(architecture.presets["tiny"].config), side, None).eval()
    assert model.config.num_groups == 2 and model.config.id2label[9] == "nine"
    torch.testing.assert_close(model.msrn.label_graph.label_counts.double(), torch.from_numpy(side.cooccurrence.counts))
    size = model.config.image_size
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, size, size), output_attentions=True, output_hidden_states=True)
    assert architecture.heatmap_stages(model.config) == 3
    for stage in range(3):
        maps = architecture.attention_maps(outputs, model.config, stage)
        features = architecture.feature_maps(outputs, model.config)[stage]
        assert maps.shape[:2] == (2, 10) and maps.shape[2:] == features.shape[2:]
    backbone_parameters = [
        name for name, _ in model.named_parameters() if name.startswith(tuple(architecture.lr_multipliers))
    ]
    assert any("level_buffers" in name for name in backbone_parameters)
    assert not any(name.startswith("head.") for name in backbone_parameters)
    with pytest.raises(ValueError, match="co-occurrence"):
        architecture.build({}, LabelSide(names=names, embeddings=embeddings), None)
