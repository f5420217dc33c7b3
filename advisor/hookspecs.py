"""Hook specifications: the plugin author's reference.

A plugin is a module or object with functions named like the hooks below, decorated with
``advisor.hookimpl``, made known through the ``advisor`` entry-point group::

    [project.entry-points.advisor]
    my_plugin = "my_package.my_plugin"

Every hook may be implemented by any number of plugins; list hooks collect every answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from advisor.collectors.base import Collector
    from advisor.finding import Finding, RunFacts
    from advisor.technique import Technique

hookspec = pluggy.HookspecMarker("advisor")
hookimpl = pluggy.HookimplMarker("advisor")


# -------------------------------------------------------------------------------------------------
# Collection: what watches the script while it runs
# -------------------------------------------------------------------------------------------------


@hookspec
def advisor_collectors(config: dict) -> list[Collector]:
    """Return the collectors this plugin provides for a profiling run.

    Called once per ``advisor profile``, in advisor's own process, before the script starts.

    :param config: the run's settings (``warmup``, ``steps``, ``timeout``, ``run_dir``).
    :returns: a list of :class:`advisor.collectors.base.Collector` instances (session side). Each is
        asked :meth:`~advisor.collectors.base.Collector.check` first and recorded in the run as
        available or ``unavailable: <reason>``; one that raises is recorded as broken and skipped.
    """


# -------------------------------------------------------------------------------------------------
# Techniques: what would help, by how much, and what it really gains
# -------------------------------------------------------------------------------------------------


@hookspec
def advisor_techniques(config: dict) -> list[Technique]:
    """Return the techniques this plugin provides.

    Called in the script's process once the profiled window is recorded, when trials are wanted; for a run
    that measures nothing (``--no-measure``), in advisor's own process once the run is analysed, where
    ``applies_to`` and ``estimate`` are all that is called (from the same :class:`advisor.technique.Context`:
    the machine in ``hardware`` is the one the script's process saw).

    :param config: the run's settings (``techniques``: the names asked for, or None for all).
    :returns: a list of :class:`advisor.technique.Technique` instances. A technique that raises in
        ``applies_to`` or ``estimate``, or returns something of the wrong type, is reported as
        ``broken``; one that raises in ``apply`` or ``benchmark`` as ``failed`` on this run's model
        (``not applicable`` for :class:`advisor.technique.DoesNotApply`); the others go on either way.
    """


# -------------------------------------------------------------------------------------------------
# Findings: mistakes seen in the run, with their evidence and the fix
# -------------------------------------------------------------------------------------------------


@hookspec
def advisor_findings(run: RunFacts) -> list[Finding]:
    """Return the performance mistakes this plugin sees in an analysed run.

    Called once per analysis, in advisor's own process, after the trace is analysed and the
    techniques' trials are read (``advisor profile``, and ``advisor show`` of a run not yet analysed).

    :param run: the :class:`advisor.finding.RunFacts` of the run: its summary, the host events and
        GPU work of the recorded steps as frames, and ``runner.json``, ``workload.json``,
        ``facts.json`` and ``meta.json``. Read it only.
    :returns: a list of :class:`advisor.finding.Finding` (empty when nothing is wrong), each with the
        evidence from this run. Every plugin's findings are kept, ranked by severity, into
        ``summary["findings"]``; those whose id the user dropped (``--no-finding ID``) are left out.
        A plugin that raises, or returns something other than findings, is recorded in
        ``summary["broken_plugins"]`` and the other plugins go on.
    """
