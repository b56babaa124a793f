"""What can go wrong with a request, as exceptions a person can act on.

Every failure a requester sees is a ``BackendError`` subclass whose message says what happened and
what to change. Task code raises whatever it likes; ``classify`` turns it into one of these, in the
server thread or inside a worker process alike (so both report the same way).
"""

from __future__ import annotations

from reprog_core import files


class BackendError(RuntimeError):
    """Base class of every error the backend reports to a requester."""


class OverBudget(BackendError):
    """The request is larger than a server limit (checked before computing) or than the memory
    budget the task itself estimated (raised by the task with ``over_budget = True``)."""


class OutOfMemory(BackendError):
    """The computation ran out of (GPU or host) memory; the worker goes on serving."""


class TaskFailed(BackendError):
    """The task raised an unexpected error; the message carries its type and text."""


class WorkerCrashed(TaskFailed):
    """The worker process died mid-computation (killed, segfault, OOM-killer). Nothing was
    stored; asking again recomputes in a fresh worker."""


class Cancelled(BackendError):
    """The request was cancelled (by its requester, or because every requester went away)."""


class DiskFull(BackendError, files.DiskFull):
    """The disk holding the cache is full. A computed result that cannot be stored is still
    returned (the backend reports this as a warning); whatever was stored before stays. A task's
    own ``files.DiskFull`` (the source-model store, the cache folder) reaches requesters as
    this."""


class StoreBusy(BackendError):
    """The result store's database stayed locked by another process for longer than the wait
    (``REPROG_CACHE_TIMEOUT_S``). Nothing is lost; ask again later."""


def disk_full(where: object) -> DiskFull:
    """The one message for a full disk under the cache directory ``where``."""
    return DiskFull(f"disk full at {where}: free space or set REPROG_CACHE_DIR")


class UnknownTask(BackendError, KeyError):
    """No task is registered under the requested kind."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


# Name -> class, so a worker process can send an error back as (name, message).
ERRORS: dict[str, type[BackendError]] = {
    cls.__name__: cls
    for cls in (
        BackendError,
        OverBudget,
        OutOfMemory,
        TaskFailed,
        WorkerCrashed,
        Cancelled,
        DiskFull,
        StoreBusy,
        UnknownTask,
    )
}


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``MemoryError``, ``torch.cuda.OutOfMemoryError`` and CUDA/CPU allocator errors.

    Checked by name and message so that this module never has to import torch.
    """
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError and kin
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def classify(exc: BaseException, kind: str, key: str) -> BackendError:
    """Turn an exception raised by task ``kind`` into the ``BackendError`` a requester sees."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, files.DiskFull):
        return DiskFull(str(exc))
    if getattr(exc, "over_budget", False):
        # The NTK engine's own budget errors (e.g. KernelTooLarge) carry over_budget=True.
        return OverBudget(f"{kind}: {exc}")
    if is_out_of_memory(exc):
        return OutOfMemory(
            f"{kind} ran out of memory ({type(exc).__name__}: {exc}). Lower n_kernel or "
            f"batch_size, or use kernel_form='trace'; other requests are still being served."
        )
    return TaskFailed(f"{kind} failed ({key}): {type(exc).__name__}: {exc}")
