"""A run's trace analysed while the script's process exits.

Once the child has saved its record (``runner.json``), what is left of it is its interpreter's exit (a second
and more with torch loaded). The trace's frames are made then, beside it, and :func:`advisor.pipeline.analyse_run`
takes them once the run has ended, if the run's record and files still agree with them. pandas and the analysis
are imported once the child is launched, beside its own start, and not before.
"""

from __future__ import annotations

import threading
from pathlib import Path

from advisor.child import LAUNCHED, SAVED


class EarlyAnalysis:
    """Follows the child's stages (:meth:`on_stage`); :meth:`frames` gives what was made."""

    def __init__(self) -> None:
        self._saved = threading.Event()
        self._run_dir: Path | None = None
        self._thread: threading.Thread | None = None
        self._frames = None

    def on_stage(self, stage: str, run_dir: Path) -> None:
        """The child was launched (import the analysis), or has saved its record (analyse its trace)."""
        if stage == LAUNCHED and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="advisor-early-analysis", daemon=True)
            self._thread.start()
        elif stage == SAVED:
            self._run_dir = Path(run_dir)
            self._saved.set()

    def frames(self):
        """The trace's frames (:class:`advisor.analysis.profile.TraceFrames`), or None when the child never saved
        its record or they could not be made (the run's analysis then makes them, and says what went wrong)."""
        self._saved.set()
        if self._thread is not None:
            self._thread.join()
        return self._frames

    def _work(self) -> None:
        try:
            from advisor.pipeline import recording_frames

            self._saved.wait()
            if self._run_dir is not None:
                self._frames = recording_frames(self._run_dir)
        except Exception:  # noqa: BLE001 - the run's own analysis says what is wrong
            self._frames = None
