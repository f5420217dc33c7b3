"""A run's trace analysed by advisor's own process while the script's process goes on.

Two moments, both of them time the script's process would otherwise spend:

- once the window is recorded, trials that measure need the recording's summary (a run of ``--no-measure`` asks
  for none: advisor's process makes its estimates later, see :mod:`advisor.estimates`). Analysing it in the
  script's process meant importing pandas there and reading the trace again later in advisor's (1.1-1.4 s of the
  examples' runs); instead the runner asks (:func:`ask_for_summary`), advisor's process analyses it (pandas
  imported there beside the child's start) and answers through a file in the run directory, and keeps the trace's
  frames;
- once the child has saved its record (``runner.json``), what is left of it is its interpreter's exit (a second
  and more with torch loaded): the trace's frames are made then, if they were not made already.

:func:`advisor.pipeline.analyse_run` takes the frames once the run has ended, if the run's record and files still
agree with them. When no answer can come (no advisor process listening, or it failed), the runner analyses the
recording itself.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from advisor.child import LAUNCHED, RECORDED, SAVED
from advisor.rundir_io import atomic_write_json

#: set in the child's environment (to advisor's process id) when advisor's process answers the runner
SERVED_ENV = "ADVISOR_SERVES_ANALYSIS"
#: the answer: ``{"summary": ...}`` or ``{"error": ...}``; the runner removes it once read
ANSWER_FILE = ".recording_summary.json"


class EarlyAnalysis:
    """Follows the child's stages (:meth:`on_stage`); :meth:`frames` gives what was made."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._run_dir: Path | None = None
        self._recorded: dict | None = None
        self._saved = False
        self._thread: threading.Thread | None = None
        self._frames = None

    @staticmethod
    def environment() -> dict[str, str]:
        """What the child's environment needs for the runner to ask this process for the recording's summary."""
        return {SERVED_ENV: str(os.getpid())}

    def on_stage(self, stage: str, run_dir: Path, record: dict | None = None) -> None:
        """The child was launched (import the analysis), has recorded its window (``record``: its runner record
        then; analyse it and answer), or has saved its record (make the frames, if not made yet)."""
        self._run_dir = Path(run_dir)
        if stage == LAUNCHED and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="advisor-early-analysis", daemon=True)
            self._thread.start()
        elif stage == RECORDED:
            self._recorded = record or {}
            self._wake.set()
        elif stage == SAVED:
            self._saved = True
            self._wake.set()

    def frames(self):
        """The trace's frames (:class:`advisor.analysis.profile.TraceFrames`), or None when the child never saved
        its record or they could not be made (the run's analysis then makes them, and says what went wrong)."""
        self._saved = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        return self._frames

    def _work(self) -> None:
        try:
            from advisor.pipeline import recording_frames, recording_summary
        except Exception as exc:  # noqa: BLE001 - the run's own analysis says what is wrong
            recording_frames = recording_summary = None
            failure = f"{type(exc).__name__}: {exc}"
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._recorded is not None:  # a runner waits: it is answered, whatever happens
                record, self._recorded = self._recorded, None
                self._write(self._answer(recording_summary, record) if recording_summary else {"error": failure})
            if self._saved:
                break
        if self._frames is None and self._run_dir is not None and recording_frames is not None:
            try:
                self._frames = recording_frames(self._run_dir)
            except Exception:  # noqa: BLE001 - the run's own analysis says what is wrong
                self._frames = None

    def _answer(self, recording_summary: Callable, record: dict) -> dict:
        """The recording's summary (its frames kept), or why it could not be made."""
        try:
            summary, self._frames = recording_summary(self._run_dir, record)
            return {"summary": summary}
        except Exception as exc:  # noqa: BLE001 - the runner analyses the recording itself
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _write(self, answer: dict) -> None:
        try:
            atomic_write_json(self._run_dir / ANSWER_FILE, answer)
        except OSError:
            pass


def ask_for_summary(run_dir: Path, record: dict, report: Callable[..., None]) -> Callable[[], dict | None]:
    """In the runner: ask advisor's process for the recording's summary (see the module's docstring); the function
    returned waits for it and gives it, or None when it cannot come (then the runner analyses the recording itself).
    What the runner does between the two runs beside advisor's analysis."""
    server = os.environ.get(SERVED_ENV)
    if not server:
        return lambda: None
    path = Path(run_dir) / ANSWER_FILE
    report(event=RECORDED, runner=record)

    def answer() -> dict | None:
        while not path.exists():
            try:
                os.kill(int(server), 0)
            except (OSError, ValueError):  # advisor's process is gone
                return None
            time.sleep(0.01)
        try:
            reply = json.loads(path.read_text())
            path.unlink()
        except (OSError, ValueError):
            return None
        return reply.get("summary")

    return answer
