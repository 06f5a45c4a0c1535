"""A full disk while a training run saves: one line naming the disk, its free space and what a save needs."""

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import torch


FULL_DISK_MESSAGES = ("No space left on device", "file write failed", "StorageFull", "Disk quota exceeded")
"""How a full disk shows in the errors of the writers a save uses: `OSError` (Python, transformers), PyTorch's
`RuntimeError` ("PytorchStreamWriter failed writing file ...: file write failed") and safetensors' `StorageFull`."""


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, (OSError, RuntimeError)) and any(text in str(error) for text in FULL_DISK_MESSAGES)


def mount_point(path: str | os.PathLike) -> str:
    """The mount point of the filesystem that holds `path` (the disk it is written to)."""
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def model_bytes(model: torch.nn.Module) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in [*model.parameters(), *model.buffers()])


@contextmanager
def naming_a_full_disk(output_dir: str, model: torch.nn.Module, optimizer_states: int = 2) -> Iterator[None]:
    """Turn a full disk while saving into `output_dir` into one line: the disk (its mount point), its free space, and
    about how much a checkpoint (weights and `optimizer_states` optimizer tensors per weight) and the final model
    need. The previous checkpoints and final model are left as they were (see `write_checkpoint`)."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if not is_disk_full(error):
            raise
        weights = model_bytes(model)
        free = shutil.disk_usage(output_dir).free
        raise OSError(
            errno.ENOSPC,
            f"No space left on device while saving into {output_dir}: the disk mounted at {mount_point(output_dir)} "
            f"has {free / 2**20:.1f} MiB free; a checkpoint needs about {(1 + optimizer_states) * weights / 2**20:.1f} "
            f"MiB and the final model about {weights / 2**20:.1f} MiB. Free space there or choose another --output_dir; "
            "the previous checkpoints and model are intact",
        ) from None
