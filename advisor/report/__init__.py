"""``advisor report``: a run (or two, compared) as GitHub-flavoured markdown with PNG plots, or JSON."""

from advisor.report.write import write_comparison, write_report

__all__ = ["write_comparison", "write_report"]
