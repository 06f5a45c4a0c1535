"""Batch collation (images -> pixel_values, label lists -> 1/0/-1 targets) and the kornia train augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader

from transformers_hsvlt.data import IGNORE_INDEX, MultiLabelCollator, TrainAugmentation, build_digit_canvases, multi_hot
from transformers_hsvlt.image_processing_multilabel import MultiLabelImageProcessor


@pytest.fixture
def processor():
    return MultiLabelImageProcessor(size={"height": 24, "width": 24})


def test_multi_hot_ignore_wins_and_range_check():
    targets = multi_hot([[0, 2], [], [1]], 3, ignore=[[2], [0], []])
    np.testing.assert_array_equal(targets, [[1, 0, -1], [-1, 0, 0], [0, 1, 0]])
    assert targets.dtype == np.float32 and IGNORE_INDEX == -1
    with pytest.raises(ValueError, match=r"labels of example 1: expected class indices in \[0, 3\), got \[3\]"):
        multi_hot([[0], [3]], 3)


def test_collator_outputs_pixel_values_and_targets(processor):
    examples = [
        {"image": PILImage.new("RGB", (30, 20), (255, 0, 0)), "labels": [0, 3], "ignore": [3, 1], "extra": "x"},
        {"image": PILImage.new("L", (8, 40), 0), "labels": [], "ignore": []},
        {"image": PILImage.new("RGB", (24, 24), (0, 0, 255)), "labels": [2]},  # no ignore key
    ]
    batch = MultiLabelCollator(processor, num_labels=4)(examples)
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == (3, 3, 24, 24) and batch["pixel_values"].dtype == torch.float32
    torch.testing.assert_close(batch["pixel_values"][0, :, 5, 5], torch.tensor([1.0, 0.0, 0.0]))
    assert batch["pixel_values"][1].abs().max() == 0
    assert batch["labels"].dtype == torch.float32
    torch.testing.assert_close(
        batch["labels"], torch.tensor([[1.0, -1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    )


def test_collator_with_dataloader_augmentation_and_missing_image_column(processor):
    data = build_digit_canvases(num_train=6, num_test=2, seed=0)["train"]
    augment = TrainAugmentation(20, randaugment_ops=1)
    loader = DataLoader(data, batch_size=4, collate_fn=MultiLabelCollator(processor, 10, augment=augment))
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, 3, 20, 20)
    expected = multi_hot(data["labels"][:4], 10)
    np.testing.assert_array_equal(batch["labels"].numpy(), expected)
    assert (batch["labels"].sum(dim=1) >= 1).all()
    assert MultiLabelCollator.columns == ("image", "labels", "ignore")
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        MultiLabelCollator(processor, 10)([{"labels": [1]}])


def test_augmentation_shape_range_and_seeded_determinism():
    augment = TrainAugmentation(32)
    batch = torch.rand(6, 3, 40, 36)
    torch.manual_seed(1)
    first = augment(batch)
    torch.manual_seed(1)
    second = augment(batch)
    torch.manual_seed(2)
    third = augment(batch)
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, third)
    assert not any(parameter.requires_grad for parameter in augment.parameters())  # kornia's policy: frozen
    with pytest.raises(ValueError, match=r"expected a float \(B, 3, H, W\) batch, got torch.uint8"):
        augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_flip_probability_one_flips_and_full_crop_is_identity():
    batch = torch.rand(3, 3, 16, 16)
    flip_only = TrainAugmentation(16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_probability=1.0, randaugment_ops=None)
    torch.testing.assert_close(flip_only(batch), batch.flip(-1), atol=1e-5, rtol=0)
    identity = TrainAugmentation(16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_probability=0.0, randaugment_ops=None)
    torch.testing.assert_close(identity(batch), batch, atol=1e-5, rtol=0)


def test_crop_zooms_in():
    """With scale < 1 the crop keeps a sub-window: a centred bright square grows on average."""
    batch = torch.zeros(16, 3, 32, 32)
    batch[:, :, 12:20, 12:20] = 1.0
    crop = TrainAugmentation(32, scale=(0.5, 0.5), ratio=(1.0, 1.0), flip_probability=0.0, randaugment_ops=None)
    torch.manual_seed(0)
    assert crop(batch).mean() > batch.mean() * 1.5
