"""Collectors: the sources of a run's raw artifacts (see :mod:`advisor.collectors.base`)."""
