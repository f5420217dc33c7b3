"""``advisor tui``: a Textual app that explores one run directory (and compares runs of the store)."""

from advisor.tui.app import AdvisorApp, make_app

__all__ = ["AdvisorApp", "make_app"]
