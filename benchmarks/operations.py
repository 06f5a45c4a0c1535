"""Counting the aten operations a step dispatches (shared by `benchmarks/labels.py` and `tests/test_performance.py`)."""

from torch.utils._python_dispatch import TorchDispatchMode


class AtenOperationCounter(TorchDispatchMode):
    """Counts every aten operation dispatched (views, transposes and autograd's own operations included)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))
