"""The processes of a tagging run and their share of the work: `Processes` (joining the others under `accelerate
launch`/`torchrun`, barriers, agreement), and `PendingBatches`, which cuts the pending images into batches, gives batch
`g` to process `g % world_size` and decodes each in a DataLoader worker."""

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from ..distributed import leave_process_group
from ..images import ImageLoadError
from .sources import Collection, load_source


#: How long a process waits at a barrier for the others (one may finish its share well before the last one).
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of the run (one, or those of `accelerate launch`/`torchrun`)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environment(cls) -> "Processes":
        """Join the other processes when launched as several (`WORLD_SIZE` > 1): gloo on CPU, nccl on GPUs."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        processes = cls(
            int(os.environ["RANK"]),
            world_size,
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
        )
        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(processes.local_rank)
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=BARRIER_TIMEOUT)
        return processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> str | None:
        """One GPU per process of a machine when there are GPUs and several processes; else the requested device."""
        if self.world_size > 1 and requested is None and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_agree(self, value: bool) -> bool:
        """Whether `value` holds in every process."""
        if self.world_size == 1:
            return value
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return all(gathered)

    def close(self) -> None:
        if self.world_size > 1:
            leave_process_group()


class PendingBatches(IterableDataset):
    """The batches of this process (global batch `g` of the pending images goes to process `g % world_size`), each
    decoded and preprocessed by one DataLoader worker (this process's batch `j` by worker `j % num_workers`), so that
    the DataLoader yields them in order."""

    def __init__(self, collection: Collection, done: set, batch_size: int, processes: Processes, processor):
        self.collection = collection
        self.done = done
        self.batch_size = batch_size
        self.processes = processes
        self.processor = processor

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for number, batch in enumerate(self._own_batches()):
            if number % num_workers == worker_id:
                yield self._decode(batch)

    def _own_batches(self) -> Iterator[list[tuple]]:
        pending = (item for item in self.collection.items() if item[0] not in self.done)
        rank, world_size = self.processes.rank, self.processes.world_size
        for number, batch in enumerate(_chunks(pending, self.batch_size)):
            if number % world_size == rank:
                yield batch

    def _decode(self, batch: list[tuple]) -> dict:
        decoded = {"keys": [], "paths": [], "pixel_values": [], "errors": []}
        for key, path, source in batch:
            try:
                image = load_source(source)
                pixel_values = self.processor(images=image, return_tensors="pt")["pixel_values"][0]
            except (ImageLoadError, ValueError, OSError) as error:
                decoded["errors"].append((key, path, " ".join(str(error).split())))
                continue
            decoded["keys"].append(key)
            decoded["paths"].append(path)
            decoded["pixel_values"].append(pixel_values)
        decoded["pixel_values"] = torch.stack(decoded["pixel_values"]) if decoded["pixel_values"] else None
        return decoded


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def own_count(pending: int, batch_size: int, processes: Processes) -> int:
    """How many of `pending` images fall in this process's batches."""
    batches = math.ceil(pending / batch_size)
    own = range(processes.rank, batches, processes.world_size)
    return sum(min(batch_size, pending - number * batch_size) for number in own)
