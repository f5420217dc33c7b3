"""The plugin manager: built-in and third-party plugins, loaded the same way (entry points)."""

from __future__ import annotations

import os

import pluggy

from advisor import hookspecs

ENTRY_POINT_GROUP = "advisor"
#: set to a non-empty value to load no third-party plugins (built-in ones still load)
DISABLE_AUTOLOAD_ENV = "ADVISOR_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DISTRIBUTION = "torch-advisor"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, which also remembers what failed to load and which distribution gave what."""

    def __init__(self) -> None:
        super().__init__("advisor")
        self.add_hookspecs(hookspecs)
        #: entry-point name -> the error that kept it out
        self.load_errors: dict[str, str] = {}
        #: entry-point name -> "distribution version"
        self.distributions: dict[str, str] = {}


def plugin_manager(blocked: tuple[str, ...] = ()) -> PluginManager:
    """A plugin manager with every installed plugin registered, except the ``blocked`` names.

    A plugin that fails to import or to register is left out and noted in ``load_errors``.
    """
    from importlib.metadata import entry_points

    pm = PluginManager()
    for name in blocked:
        pm.set_blocked(name)
    builtin_only = bool(os.environ.get(DISABLE_AUTOLOAD_ENV))
    described: dict = {}  # a distribution's metadata is parsed once, not once per entry point
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = None
        if ep.dist is not None:
            if ep.dist not in described:  # the entry points of one distribution share its object
                metadata = ep.dist.metadata
                described[ep.dist] = (metadata["Name"], metadata["Version"])
            dist = described[ep.dist]
        if builtin_only and (dist is None or dist[0] != BUILTIN_DISTRIBUTION):
            continue
        if dist is not None:
            pm.distributions[ep.name] = f"{dist[0]} {dist[1]}"
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            pm.check_pending()
        except Exception as exc:
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            pm.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"
    return pm


def call_each(hook, **kwargs) -> list[tuple[str, list | None, Exception | None]]:
    """Call every implementation of a list hook on its own: ``(plugin name, answer, error)`` for each,
    so that one plugin that raises costs only its own answer."""
    results = []
    for impl in hook.get_hookimpls():
        try:
            answer = impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception as exc:
            results.append((impl.plugin_name, None, exc))
        else:
            results.append((impl.plugin_name, list(answer or []), None))
    return results


def collect(hook, kind: type, **kwargs) -> tuple[list, list[tuple[str, str]]]:
    """Every plugin's answers to a list hook that are ``kind``, and ``(plugin, why)`` for each plugin
    that raised or answered something else."""
    items, problems = [], []
    for plugin, answer, error in call_each(hook, **kwargs):
        if error is not None:
            problems.append((plugin, f"{type(error).__name__}: {error}"))
            continue
        for item in answer:
            if isinstance(item, kind):
                items.append(item)
            else:
                problems.append((plugin, f"returned {type(item).__name__}, not a {kind.__name__}"))
    return items, problems


def installed_techniques(blocked: tuple[str, ...] = (), names: list[str] | None = None) -> dict:
    """The installed techniques by name (only ``names``, when given); broken plugins are left out."""
    from advisor.technique import Technique

    techniques, _ = collect(plugin_manager(blocked).hook.advisor_techniques, Technique,
                            config={"techniques": names})
    return {t.name: t for t in techniques if names is None or t.name in names}
