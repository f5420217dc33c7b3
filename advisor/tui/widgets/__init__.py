"""Reusable widgets of the TUI, one per module, each with its own DEFAULT_CSS."""
