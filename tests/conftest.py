import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from transformers_hsvlt.configuration_hsvlt import HSVLTConfig  # noqa: E402


def tiny_config(**overrides) -> HSVLTConfig:
    """A tiny HSVLT (4 stages, widths 8-32, 5 labels) that runs in milliseconds on CPU. Its initialiser std suits its
    widths (~1/sqrt(width)); ConvNeXt's 0.02 is meant for widths in the hundreds."""
    values = dict(
        initializer_range=0.2,
        depths=[1, 1, 2, 1],
        hidden_sizes=[8, 16, 24, 32],
        label_embedding_size=12,
        id2label={index: name for index, name in enumerate(["cat", "dog", "person", "car", "tree"])},
        image_size=64,
    )
    values.update(overrides)
    return HSVLTConfig(**values)


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
