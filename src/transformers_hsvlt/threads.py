"""CPU threads on a shared machine.

HSVLT's label side is many small, synchronised matrix products: on a machine whose cores are busy with other work,
every parallel region waits for the thread that lost its core, and HSVLT-S slows down far more than ConvNeXt-S (2
threads with one competing busy process on 2 cores: 11.1 s per image instead of 1.8 s; 1 thread: 1.9 s; see
`benchmarks/results.md`). The commands therefore use as many intra-op threads as CPUs are idle when they start
(`--threads auto`, the default). With more threads than idle CPUs, `OMP_WAIT_POLICY=PASSIVE` (set before the
process starts) keeps waiting threads from spinning.
"""

import os
import time

import torch


def idle_cpus(sample_seconds: float = 0.5) -> int:
    """How many CPUs are idle now: the idle share of all CPU time over `sample_seconds` (from `/proc/stat`), times the
    number of CPUs, rounded, at least 1; `os.cpu_count()` where `/proc/stat` does not exist. On a machine whose cores
    are busy with other work, that many intra-op threads avoid waiting at every parallel region for a thread that lost
    its core."""

    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        return values[3] + values[4], sum(values[:8])  # idle + iowait; user..steal

    try:
        idle_before, total_before = idle_and_total()
        time.sleep(sample_seconds)
        idle_after, total_after = idle_and_total()
    except OSError:
        return os.cpu_count() or 1
    idle_share = (idle_after - idle_before) / max(total_after - total_before, 1)
    return max(1, round(idle_share * (os.cpu_count() or 1)))


def set_threads(threads: str) -> int:
    """`torch.set_num_threads` from `--threads`: `auto` (the idle CPUs shared by the processes launched together on
    this machine, `LOCAL_WORLD_SIZE` of `accelerate launch`/`torchrun`, at least 1 each; see `idle_cpus`) or a number
    from 1 to the number of CPUs (more threads than CPUs only wait for each other)."""
    cpus = os.cpu_count() or 1
    if threads == "auto":
        count = max(1, idle_cpus() // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    elif threads.isdigit() and 0 < int(threads) <= cpus:
        count = int(threads)
    else:
        raise ValueError(f"--threads must be auto or a number from 1 to {cpus} (this machine's CPUs), got {threads!r}.")
    torch.set_num_threads(count)
    return count
