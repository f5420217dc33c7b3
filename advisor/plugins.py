"""The plugin manager: built-in and third-party plugins, loaded the same way (entry points)."""

from __future__ import annotations

import os

import pluggy

from advisor import hookspecs

ENTRY_POINT_GROUP = "advisor"
#: set to a non-empty value to load no third-party plugins (built-in ones still load)
DISABLE_AUTOLOAD_ENV = "ADVISOR_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DISTRIBUTION = "torch-advisor"


def plugin_manager(blocked: tuple[str, ...] = ()) -> pluggy.PluginManager:
    """A plugin manager with every installed plugin registered, except the ``blocked`` names."""
    pm = pluggy.PluginManager("advisor")
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        _load_builtin_only(pm)
    else:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


def _load_builtin_only(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION and not pm.is_blocked(ep.name):
            pm.register(ep.load(), name=ep.name)


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
