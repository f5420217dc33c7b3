"""The runner's progress channel to advisor's process, read from a real child running a real script."""

import json
import os
import subprocess
import sys
import time

from conftest import SCRIPTS
from advisor.runner.run import STEP_REPORT_EVERY_S

SCRIPT = SCRIPTS / "tiny_mlp_infer.py"


def test_steps_after_the_window_are_reported_a_few_times_a_second_not_each(tmp_path):
    """A script of 3,000 tiny model calls going on after its window: every step before and in the window is
    reported, then a few reports a second, so that advisor's process is not woken for each step."""
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "advisor.runner", "--run-dir", str(tmp_path), "--warmup", "2",
                              "--steps", "2", "--keep-running", str(SCRIPT), "--", "3000"],
                             env={**os.environ, "ADVISOR_PROGRESS_FD": str(write_fd)}, pass_fds=[write_fd],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as channel:
        events = [json.loads(line) for line in channel]
    elapsed = time.monotonic() - started
    assert child.wait(timeout=120) == 0, child.stderr.read()
    record = json.loads((tmp_path / "runner.json").read_text())
    assert record["boundaries"] > 2900 and record["recorded_steps"] == 2
    steps = [e["n"] for e in events if e["event"] == "step"]
    assert steps[:4] == [1, 2, 3, 4] and steps[-1] <= record["boundaries"], steps
    assert len(steps) < record["boundaries"] / 10, (len(steps), elapsed)
    assert len(steps) <= 4 + elapsed / STEP_REPORT_EVERY_S + 1, (len(steps), elapsed)
