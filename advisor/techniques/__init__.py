"""The built-in techniques: each a plugin module written only against the public API
(:mod:`advisor.technique`, :mod:`advisor.hookspecs`), registered through the ``advisor`` entry points."""
