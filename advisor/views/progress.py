"""The live progress line while the script runs (steps done of the window, elapsed time)."""

from __future__ import annotations


class RunProgress:
    """A transient Rich progress bar on stderr, shown only when stderr is a terminal.

    It starts at the first update, once the script's process is launched: Rich is imported beside the script's
    start-up, not before it."""

    def __init__(self, warmup: int, steps: int, keep_running: bool = False):
        self._total = warmup + steps
        self._warmup = warmup
        self._keep_running = keep_running
        self._progress = None
        self._task = None
        self._started = False

    def __enter__(self) -> "RunProgress":
        return self

    def update(self, steps_done: int, mode: str | None, window_done: bool, elapsed: float,
               activity: str | None = None) -> None:
        if not self._started:
            self._start()
        if self._progress is None:
            return
        if activity:
            text = activity
        elif window_done:
            then = "the script goes on" if self._keep_running else "stopping the script"
            text = f"recorded {self._total - self._warmup} steps; {then} (step {steps_done})"
        elif mode is None:
            text = "waiting for the first step"
        else:
            phase = "warmup" if steps_done < self._warmup else "recording"
            text = f"step {steps_done}/{self._total} ({phase}; steps found by {mode})"
        self._progress.update(self._task, completed=min(steps_done, self._total), description=text)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._started = True
        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]advisor[/]"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=console, transient=True, redirect_stdout=True, redirect_stderr=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("starting the script", total=self._total)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
