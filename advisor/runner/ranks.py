"""One rank of a torch.distributed run, as the runner inside it sees it.

torchrun starts one runner per rank with the rank's place in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). Every rank counts the same step boundaries (DDP's steps run in
lockstep, each rank's optimizer steps once per iteration), so with the same ``--warmup`` and ``--steps``
all ranks record the same steps without talking to each other. Each writes into its own folder of the
run directory (:func:`advisor.rundir.rank_dir`).

:class:`DdpWatch` notes, cheaply, what the trace cannot show of DistributedDataParallel: the backend,
how many forward passes of a step synchronised gradients (gradient accumulation without ``no_sync()``),
how long the main thread waited for a core (a rank slowed by a busy machine, not by its own work), and
DDP's own counters (``_get_ddp_logging_data()``) at the window's end.
"""

from __future__ import annotations

import dataclasses
import os
import signal

from advisor.rundir import rank_dir

#: DDP's own counters kept from ``_get_ddp_logging_data()`` (times there are in ns)
_DDP_FIELDS = ("backend_name", "world_size", "module_name", "bucket_cap_bytes", "bucket_sizes", "rebuilt_bucket_sizes",
               "num_buckets_reduced", "total_parameter_size_bytes", "unused_parameter_size", "find_unused_parameters",
               "gradient_as_bucket_view", "gloo_num_threads", "iteration", "has_rebuilt_buckets")
_DDP_TIMES = ("avg_forward_compute_time", "avg_backward_compute_time", "avg_backward_comm_time",
              "avg_backward_compute_comm_overlap_time")


@dataclasses.dataclass(frozen=True)
class Rank:
    """This process's place in the world, as torchrun's environment says."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_environment(cls) -> "Rank":
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(rank=int(env.get("RANK", "0")), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")),
                   local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))))

    def run_dir(self, run_dir) -> "os.PathLike":
        """This rank's folder of the run directory, created."""
        path = rank_dir(run_dir, self.rank)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress_fd(self) -> int | None:
        """Rank 0 reports progress, into the named pipe advisor made (the launcher closes inherited descriptors)."""
        path = os.environ.get("ADVISOR_PROGRESS_PATH")
        if self.rank != 0 or not path:
            return None
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    def record(self) -> dict:
        return {**dataclasses.asdict(self), "launcher_environment": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT",
                                       "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK") if k in os.environ}}


class LauncherStopped(BaseException):
    """The launcher asked this rank to stop (SIGTERM: another rank failed, or advisor was interrupted)."""


def _terminated(signum, frame):
    raise LauncherStopped


def stop_on_sigterm() -> None:
    """torchrun ends the other ranks with SIGTERM when one fails: stop the script there and save what it recorded."""
    signal.signal(signal.SIGTERM, _terminated)


class DdpWatch:
    """DistributedDataParallel models seen in the recorded steps and how their forward passes synchronised."""

    def __init__(self):
        self.models: list = []
        self.backend: str | None = None
        self.forwards = self.synced_forwards = 0
        self.steps_with_several_synced = 0
        self._synced_this_step = 0
        #: how long the main thread waited for a core in each recorded step (Linux schedstat), in ms
        self.run_queue_ms: list[float] = []
        self._queued_at: int | None = None

    def forward(self, module) -> None:
        """An outermost module call in a recorded step."""
        from torch.nn.parallel import DistributedDataParallel

        if not isinstance(module, DistributedDataParallel):
            return
        if not any(module is seen for seen in self.models):
            self.models.append(module)
        self.forwards += 1
        if module.training and getattr(module, "require_backward_grad_sync", True):
            self.synced_forwards += 1
            self._synced_this_step += 1

    def step_ending(self, was_recording: bool) -> None:
        """A step is ending, before advisor's own work at its boundary (saving the recording after the last)."""
        if was_recording and self._queued_at is not None and (now := _run_queue_ns()) is not None:
            self.run_queue_ms.append(round((now - self._queued_at) / 1e6, 3))

    def boundary(self, was_recording: bool, recording: bool) -> None:
        """A step ended: ``was_recording`` says whether it was a recorded one, ``recording`` whether the next is."""
        import torch.distributed as dist

        self._queued_at = _run_queue_ns() if recording else None
        if not was_recording:
            return
        if self._synced_this_step > 1:
            self.steps_with_several_synced += 1
        self._synced_this_step = 0
        if dist.is_available() and dist.is_initialized():
            self.backend = str(dist.get_backend())

    def record(self) -> dict:
        return {"backend": self.backend, "ddp_forwards": self.forwards, "synced_forwards": self.synced_forwards,
                "steps_with_several_synced_forwards": self.steps_with_several_synced,
                "run_queue_ms": self.run_queue_ms,
                "ddp": [_ddp_counters(model) for model in self.models]}


def _run_queue_ns() -> int | None:
    """Nanoseconds this thread has waited, runnable, for a core so far (``/proc/thread-self/schedstat``)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ddp_counters(model) -> dict:
    """DDP's own counters (bucket sizes, backward compute/communication time and their overlap), in ms."""
    try:
        data = model._get_ddp_logging_data()
    except Exception as exc:  # a private API: it may change or go
        return {"unavailable": f"{type(exc).__name__}: {exc}"}
    counters = {k: data[k] for k in _DDP_FIELDS if k in data}
    counters.update({f"{k}_ms": round(data[k] / 1e6, 4) for k in _DDP_TIMES if k in data})
    return counters
