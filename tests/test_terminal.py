"""What a person at a terminal sees: the live progress line, the default run store, `advisor show`."""

import os
import pty
import select
import subprocess
import sys
import time

from conftest import SCRIPTS, run_advisor


def _run_in_pty(args, cwd, timeout=120) -> tuple[int, str]:
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "advisor", *map(str, args)], stdin=child_fd, stdout=child_fd,
                            stderr=child_fd, cwd=cwd, env=env, close_fds=True)
    os.close(child_fd)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(main_fd)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_progress_line_on_a_terminal(tmp_path):
    code, screen = _run_in_pty(["profile", "--warmup", "3", "--steps", "20", "--no-measure", SCRIPTS / "slow_loader_train.py"],
                               cwd=tmp_path)
    assert code == 0, screen
    assert "(recording; steps found by optimizer)" in screen, screen[-2000:]
    assert "Where a step goes" in screen


def test_default_store_and_show_newest(tmp_path):
    empty = run_advisor("show", cwd=tmp_path)
    assert empty.returncode == 10 and "no runs in .advisor/runs" in empty.stderr
    first = run_advisor("profile", "--warmup", "1", "--steps", "2", "--no-measure", SCRIPTS / "tiny_mlp_infer.py", cwd=tmp_path)
    second = run_advisor("profile", "--warmup", "1", "--steps", "3", "--no-measure", SCRIPTS / "tiny_mlp_infer.py", cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    runs = sorted((tmp_path / ".advisor" / "runs").iterdir())
    assert len(runs) == 2 and all(r.name.endswith("tiny_mlp_infer") or "tiny_mlp_infer-" in r.name for r in runs)
    shown = run_advisor("show", "--json", cwd=tmp_path)
    assert shown.returncode == 0 and '"count": 3' in shown.stdout
