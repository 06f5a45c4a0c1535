"""Leaving a distributed run's process group safely, shared by training (`FamilyTrainer.end`) and tagging
(`collection.Processes.close`)."""

import time

import torch.distributed as dist


GLOO_WORKERS_GRACE_SECONDS = 0.2
"""How long a process pauses, without the GIL, between its last collective and leaving the process group."""


def let_collective_workers_finish() -> None:
    """Pause so that gloo's worker threads finish with the last collective before the process group goes.

    A worker thread frees a finished collective's tensors after the collective has returned, and freeing a tensor
    that Python has seen takes the GIL. A process that destroys its group, or exits, at that moment deadlocks (the
    main thread holds the GIL while it joins the worker) or aborts ("terminate called without an active exception",
    pytorch/pytorch#190489), and its launcher reports a finished run as failed. Sleeping releases the GIL."""
    time.sleep(GLOO_WORKERS_GRACE_SECONDS)


def leave_process_group() -> None:
    """Destroy the default process group, if any, once gloo's workers are done with the last collective."""
    if dist.is_initialized():
        let_collective_workers_finish()
        dist.destroy_process_group()
