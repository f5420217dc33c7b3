"""The public types of technique plugins: what a technique answers and what it is given.

A technique plugin implements :func:`advisor.hookspecs.advisor_techniques` and returns
:class:`Technique` objects. advisor calls, in the script's process once the window is recorded (a run that
measures nothing, ``--no-measure``, calls only the first two, in advisor's own process once the run is analysed):

1. :meth:`Technique.applies_to` with the :class:`Context` (the run's summary, the captured workload's
   description, the hardware) — the reason is shown either way;
2. :meth:`Technique.estimate`, before anything runs — it must say what it is based on;
3. :meth:`Technique.apply` on a private copy of the captured workload, which advisor then times
   against the unchanged copy, interleaved, and checks for numerical change; or, for a technique
   that changes something other than the model step (the DataLoader, say),
   :meth:`Technique.benchmark`, which brings its own pair of callables to time and its own
   quality check.

A technique never touches the user's objects: it only changes the copy it is given. When the copy
shows that it does not apply after all (no layer it can change, say), ``apply`` or ``benchmark``
raises :class:`DoesNotApply` with the reason; any other exception is recorded as
``failed: <error>`` for this run, and the other techniques go on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from advisor.workload import Workload

#: the workload types and helpers, importable from here too (loaded on first use: :mod:`advisor.workload` needs torch)
_WORKLOAD_TYPES = ("Workload", "Call", "OptimizerSpec", "relative_error", "tensor_leaves")


def __getattr__(name: str):
    if name in _WORKLOAD_TYPES:
        import advisor.workload

        return getattr(advisor.workload, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a technique applies to this run, and why (or why not)."""

    applies: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The expected effect, made before anything runs.

    :param speedup: expected step-time ratio (baseline / variant), None when unknown.
    :param memory_bytes: expected change of peak memory (negative saves), None when unknown.
    :param basis: what the estimate rests on (time shares, hardware, measured peaks).
    :param risk: the numerical risk in words ("none", "bf16 rounding: ~1e-2 relative", ...).
    """

    speedup: float | None
    memory_bytes: int | None = None
    basis: str = ""
    risk: str = "none"


@dataclasses.dataclass(frozen=True)
class Context:
    """What a technique may look at.

    :param summary: the run's summary (the same dict as ``advisor profile --json``).
    :param workload: the captured workload's description (``workload.json``: model, inputs, ``batch_size``,
        optimizer, ``repeated_blocks``, ...) and, when the trials measure, ``batch_that_fits``: the replayed
        step's ``peak_bytes`` and ``per_sample_bytes``, ``headroom_bytes`` and ``headroom_source``, ``margin`` and
        ``largest_batch`` (or ``why`` it is not known).
    :param hardware: ``cpu_flags`` (set of str: what the CPU has), ``cpu_capability`` (torch's, e.g.
        "AVX2", "AVX512"), ``onednn_max_cpu_isa`` (``ONEDNN_MAX_CPU_ISA`` or None), ``cpu_bf16``
        ("amx_bf16", "avx512_bf16" or None: the bf16 instructions torch will use, only where the CPU has
        them, torch's capability is AVX-512 and ``ONEDNN_MAX_CPU_ISA`` does not cap oneDNN below them),
        ``cuda`` (bool), ``gpus`` (list of dicts with ``name``, ``compute_capability``, ``total_memory``),
        ``device`` ("cpu" or "cuda"), ``cpu_cores`` (the cores the script's process may run on),
        ``torch_threads`` (torch's intra-op threads), ``quantized_engines`` (torch's, e.g. ["none", "onednn",
        "x86", "fbgemm"]), ``peaks`` (the machine's measured peaks, as ``advisor peaks --json`` prints them:
        ``flops_per_s`` and ``conv_flops_per_s`` by dtype, ``bytes_per_s``, ``device``, ``measured_at``; None when
        not measured). The summary's hot ops carry the roofline (``intensity``, ``attainable_flops_per_s``,
        ``roofline_fraction``, ``bound``) and ``summary["roofline"]`` the step's MFU.

    ``applies_to`` and ``estimate`` should read what they need from here, not import torch: for a run that
    measures nothing they are called in advisor's own process, where importing torch costs seconds.
    """

    summary: dict
    workload: dict
    hardware: dict

    def share_of(self, *op_names: str) -> float:
        """Share of the window's time spent in ops whose names contain any of ``op_names``."""
        return sum(op.get("share") or 0.0 for op in self.summary.get("hot_ops", [])
                   if any(name in op["name"] for name in op_names))


class DoesNotApply(Exception):
    """Raised by :meth:`Technique.apply` or :meth:`Technique.benchmark` when the workload itself shows
    that the technique does not apply; the message is the reason shown."""


@dataclasses.dataclass
class Benchmark:
    """A technique's own measurement, for a change that is not in the replayed model step.

    :param baseline: one unit of work as the script does it (e.g. loading a few batches).
    :param variant: the same unit of work with the technique applied.
    :param phases: the phases of the step the unit stands for (``"data"``, ``"forward"``,
        ``"backward"``, ``"optimizer"``): the measured speedup is carried over to the whole step
        through their share of it.
    :param quality: the technique's own quality check, done before the timing, as a dict like the
        step trials' (``output_rel_error``: relative change of what the unit produces, None when not
        comparable; other keys are shown as they are).
    :param notes: what to report about the change (settings tried, counts).
    :param close: called once timing ends, however it ends (e.g. to stop worker processes).
    """

    baseline: Callable[[], object]
    variant: Callable[[], object]
    phases: tuple[str, ...]
    quality: dict = dataclasses.field(default_factory=dict)
    notes: dict = dataclasses.field(default_factory=dict)
    close: Callable[[], None] | None = None


class Technique:
    """Base class of techniques; subclasses set the attributes and implement ``applies_to``,
    ``estimate`` and either ``apply`` or ``benchmark``."""

    #: short identifier used by ``--techniques`` and ``--apply``
    name: str = ""
    #: one line for people
    title: str = ""
    #: how to make the same change in one's own script
    snippet: str = ""
    #: True for a technique that removes arithmetic (structured pruning): its gain may exceed what the machine's
    #: measured peaks allow for the step's FLOPs, which otherwise flags a measured gain ``suspect``
    changes_flops: bool = False

    def applies_to(self, context: Context) -> Verdict:
        """Whether the technique applies to this run, with the reason either way."""
        raise NotImplementedError

    def estimate(self, context: Context) -> Estimate:
        """The expected effect, before anything runs; called only when it applies."""
        raise NotImplementedError

    def snippet_for(self, context: Context) -> str:
        """How to make the change in this run's script, in its own names where the context shows them
        (``snippet`` unless overridden); called when the technique applies."""
        return self.snippet

    def apply(self, workload: Workload) -> Workload:
        """Change ``workload`` (a private copy) and return it.

        Under ``advisor profile --apply`` the same method is given the script's running model instead,
        at its first call: changes made in place, through ``map_inputs`` and through
        ``forward_contexts`` then act on every later step. A technique that changes ``batch_scale`` or
        replaces the model's parameters cannot act on a running script and is refused there."""
        raise NotImplementedError

    def benchmark(self, workload: Workload) -> Benchmark | None:
        """The technique's own measurement, or None (the default) to time ``apply``'s replayed step
        against the unchanged one. ``workload`` is a private copy; its ``data_loader`` is the script's
        own and stays unchanged."""
        return None


def amdahl(share: float, local_speedup: float) -> float:
    """Whole-step speedup when ``share`` of the step gets ``local_speedup`` faster."""
    share = min(max(share, 0.0), 1.0)
    return 1.0 / ((1.0 - share) + share / local_speedup)
