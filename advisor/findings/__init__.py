"""The built-in findings: one plugin module per theme, each loaded through the ``advisor`` entry-point
group like any third-party plugin (``-p no:findings_<theme>`` blocks one), written only against the
public API of :mod:`advisor.finding`."""
