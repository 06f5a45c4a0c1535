"""One training per output directory: `hsvlt-train` holds a lock file in `output_dir` while it runs.

The lock records the process id and host of its run. A second training into the same directory is refused while
that process lives; the lock of a run that died without removing it (killed, machine crash) is taken over, so that
`--resume_from_checkpoint last` works after a crash. A lock held on another host cannot be checked from here: it is
refused, naming the file to delete if no training runs there.
"""

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


LOCK_NAME = ".hsvlt-train.lock"


def lock_holder_is_running(holder: dict) -> bool:
    """Whether the process of a lock (`{"pid": ..., "host": ...}`) may still run: always when it is on another
    host; on this host, when a process with its id exists (and it is not this process)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def read_lock(path: Path) -> dict:
    """The holder recorded in a lock file; an unreadable lock (written by no run of ours) has none."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def take_lock(path: Path) -> None:
    """Create the lock file `path` with this process's id and host, atomically (it appears complete or not at all);
    take over the lock of a dead run; refuse one whose run may be alive."""
    holder = {"pid": os.getpid(), "host": socket.gethostname()}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f"{LOCK_NAME}.", delete=False) as file:
        json.dump(holder, file)
    try:
        for _ in range(2):
            try:
                os.link(file.name, path)
                return
            except FileExistsError:
                current = read_lock(path)
                if lock_holder_is_running(current):
                    raise ValueError(
                        f"--output_dir {path.parent}: another training (process {current.get('pid')} on "
                        f"{current.get('host')}) is writing into it; wait for it to end or choose another --output_dir "
                        f"(if no training runs there, delete {path})."
                    ) from None
                path.unlink(missing_ok=True)  # the run that held it is dead
        raise ValueError(f"--output_dir {path.parent}: could not take the lock {path}; another training is starting.")
    finally:
        os.unlink(file.name)


@contextmanager
def output_directory_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the training lock of `output_dir` (created if needed) for the duration of the block; a directory created
    here and still empty afterwards (the run was refused) is removed again."""
    directory = Path(output_dir)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    locked = False
    try:
        take_lock(directory / LOCK_NAME)
        locked = True
        yield
    finally:
        if locked:
            (directory / LOCK_NAME).unlink(missing_ok=True)
        if created and not any(directory.iterdir()):
            directory.rmdir()
