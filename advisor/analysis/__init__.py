"""Analysis: a run directory's raw artifacts ──► pandas frames ──► answers, one module per question."""
