"""Multi-label classification losses shared by every model of the family (remote code: imports only torch).

Targets are `(batch_size, num_labels)`: 1 present, 0 absent, -1 left out of the loss (e.g. VOC "difficult"); soft
targets in [0, 1] are accepted. Both losses are a mean over the images of a per-image sum or mean over labels, so
that `Trainer`'s gradient accumulation over b-image steps equals one step over the whole batch.

- `bce`: binary cross-entropy with logits, averaged over the entries that are not -1 (HSVLT's and MSRN's loss).
- `asl`: the Asymmetric Loss (Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021,
  arXiv 2009.14119): with p = sigmoid(logit) and the shifted probability p_m = max(p - clip, 0),
  `L = -[y (1 - p)^gamma_positive log(p) + (1 - y) p_m^gamma_negative log(1 - p_m)]`, summed over the labels and
  averaged over the images. The authors' implementation also sums over the batch; averaging divides the gradient
  by the batch size (a learning-rate factor) and makes accumulation exact.
"""

import torch
import torch.nn.functional as F

from .configuration_family import MULTILABEL_LOSSES


_LOG_EPSILON = 1e-8


def check_multilabel_targets(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise a `ValueError` unless `labels` has the logits' shape and holds only -1 or values in [0, 1]. The value
    check reads the tensor, so it is skipped while `torch.compile` traces (it would break the graph)."""
    if labels.shape != logits.shape:
        raise ValueError(
            f"`labels` must have the shape of the logits (batch_size, num_labels) = {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}."
        )
    if torch.compiler.is_compiling():
        return
    labels = labels.float()
    valid = (labels == -1) | ((labels >= 0) & (labels <= 1))
    if not bool(valid.all()):
        bad = labels[~valid].flatten()[:3].tolist()
        raise ValueError(
            f"`labels` must be 1 (present), 0 (absent), -1 (ignored) or soft targets in [0, 1], got {bad}."
        )


def masked_binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over the entries whose label is not -1; 0 when every entry is ignored."""
    check_multilabel_targets(logits, labels)
    labels = labels.to(logits.dtype)
    valid = labels != -1
    losses = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
    return (losses * valid).sum() / valid.sum().clamp(min=1)


def asymmetric_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma_negative: float = 4.0,
    gamma_positive: float = 0.0,
    clip: float = 0.05,
) -> torch.Tensor:
    """The Asymmetric Loss (see the module docstring): summed over labels, averaged over images; -1 entries are
    left out."""
    check_multilabel_targets(logits, labels)
    if gamma_negative < 0 or gamma_positive < 0 or not 0 <= clip < 1:
        raise ValueError(
            f"ASL needs gamma_negative >= 0, gamma_positive >= 0 and clip in [0, 1), got {gamma_negative}, "
            f"{gamma_positive}, {clip}."
        )
    labels = labels.to(torch.float32)
    valid = labels != -1
    targets = labels.clamp(min=0)
    probabilities = torch.sigmoid(logits.float())
    shifted = (probabilities - clip).clamp(min=0) if clip > 0 else probabilities
    positive = targets * (1 - probabilities).pow(gamma_positive) * probabilities.clamp(min=_LOG_EPSILON).log()
    negative = (1 - targets) * shifted.pow(gamma_negative) * (1 - shifted).clamp(min=_LOG_EPSILON).log()
    per_entry = -(positive + negative) * valid
    return (per_entry.sum() / logits.shape[0]).to(logits.dtype)


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The loss named by `config.multilabel_loss` (`bce` or `asl`, with `config.asl_gamma_negative`,
    `config.asl_gamma_positive` and `config.asl_clip`)."""
    name = getattr(config, "multilabel_loss", "bce")
    if name == "bce":
        return masked_binary_cross_entropy(logits, labels)
    if name == "asl":
        return asymmetric_loss(
            logits,
            labels,
            gamma_negative=config.asl_gamma_negative,
            gamma_positive=config.asl_gamma_positive,
            clip=config.asl_clip,
        )
    raise ValueError(f"config.multilabel_loss must be one of {MULTILABEL_LOSSES}, got {name!r}.")
