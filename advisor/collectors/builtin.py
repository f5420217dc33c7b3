"""The built-in session-side collectors, registered through the ``advisor`` entry-point group."""

from __future__ import annotations

from advisor.collectors.nvml import GpuSampler
from advisor.collectors.perf_stat import PerfStat
from advisor.collectors.psutil_sampler import PsutilSampler
from advisor.hookspecs import hookimpl


@hookimpl
def advisor_collectors(config: dict):
    return [PsutilSampler(), GpuSampler(), PerfStat()]
