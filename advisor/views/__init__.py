"""Views of a run: the terminal summary and progress (Rich)."""
