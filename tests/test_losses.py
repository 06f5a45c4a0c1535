"""The shared multi-label losses against values computed by hand."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from transformers_hsvlt.multilabel_losses import asymmetric_loss, masked_binary_cross_entropy, multilabel_loss


LOGITS = torch.tensor([[0.0, math.log(3.0)]])
"""p = sigmoid(logits) = (1/2, 3/4)."""


def asl_negative(probability, clip=0.05, gamma=4.0):
    """-(p - clip)^gamma log(1 - (p - clip)) for one negative, by hand."""
    shifted = probability - clip
    return -(shifted**gamma) * math.log(1 - shifted)


def test_asl_one_positive_one_negative_by_hand():
    # positive p = 1/2, gamma+ = 0: -log(1/2); negative p = 3/4 shifted to 0.7: -(0.7^4) log(0.3)
    expected = math.log(2) + 0.7**4 * -math.log(0.3)
    loss = asymmetric_loss(LOGITS, torch.tensor([[1.0, 0.0]]), gamma_negative=4.0, gamma_positive=0.0, clip=0.05)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_asl_positive_focusing_and_no_clip():
    # gamma+ = 2: -(1 - 1/2)^2 log(1/2); clip 0, gamma- = 1: -(3/4) log(1/4)
    expected = 0.25 * math.log(2) + 0.75 * math.log(4)
    loss = asymmetric_loss(LOGITS, torch.tensor([[1.0, 0.0]]), gamma_negative=1.0, gamma_positive=2.0, clip=0.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_asl_negative_below_the_clip_costs_nothing():
    logits = torch.tensor([[math.log(0.04 / 0.96)]])  # p = 0.04 < clip 0.05
    assert asymmetric_loss(logits, torch.tensor([[0.0]])).item() == 0.0


def test_asl_ignores_minus_one_entries():
    loss = asymmetric_loss(LOGITS, torch.tensor([[1.0, -1.0]]))
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)


def test_asl_soft_targets_mix_both_terms():
    loss = asymmetric_loss(LOGITS, torch.tensor([[0.5, 0.0]]))
    expected = 0.5 * math.log(2) + 0.5 * asl_negative(0.5) + asl_negative(0.75)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_asl_sums_over_labels_and_averages_over_images():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.cat([LOGITS, LOGITS])
    second = asl_negative(0.5) + math.log(4 / 3)  # negative p = 1/2; positive p = 3/4
    expected = (math.log(2) + asl_negative(0.75) + second) / 2
    assert math.isclose(asymmetric_loss(logits, labels).item(), expected, rel_tol=1e-6)


def test_bce_equals_torch_and_ignores_minus_one():
    torch.manual_seed(0)
    logits = torch.randn(3, 4)
    targets = torch.randint(0, 2, (3, 4)).float()
    torch.testing.assert_close(
        masked_binary_cross_entropy(logits, targets), F.binary_cross_entropy_with_logits(logits, targets)
    )
    with_ignored = targets.clone()
    with_ignored[0, 1] = with_ignored[2, 3] = -1
    kept = with_ignored != -1
    torch.testing.assert_close(
        masked_binary_cross_entropy(logits, with_ignored),
        F.binary_cross_entropy_with_logits(logits[kept], targets[kept]),
    )


def test_multilabel_loss_dispatches_on_the_config():
    labels = torch.tensor([[1.0, 0.0]])
    asl = SimpleNamespace(multilabel_loss="asl", asl_gamma_negative=1.0, asl_gamma_positive=2.0, asl_clip=0.0)
    assert math.isclose(
        multilabel_loss(LOGITS, labels, asl).item(), 0.25 * math.log(2) + 0.75 * math.log(4), rel_tol=1e-6
    )
    bce = SimpleNamespace(multilabel_loss="bce")
    torch.testing.assert_close(multilabel_loss(LOGITS, labels, bce), F.binary_cross_entropy_with_logits(LOGITS, labels))
    with pytest.raises(ValueError, match="multilabel_loss"):
        multilabel_loss(LOGITS, labels, SimpleNamespace(multilabel_loss="focal"))


@pytest.mark.parametrize(
    "labels, message",
    [(torch.tensor([[1.0, 2.0]]), "soft targets"), (torch.tensor([[1.0]]), "shape")],
)
def test_bad_targets_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        asymmetric_loss(LOGITS, labels)
