"""torchrun's launcher in advisor's child process: ``python -m advisor.runner.launch --launch-file F -- ARGS``.

Runs ``torch.distributed.run`` with ``ARGS`` as torchrun would, and writes into ``F`` the ranks that failed
(exit code, the signal that killed one) so that advisor reports each by its rank. When one rank fails,
torchrun stops the others with SIGTERM, and they save what they recorded (:mod:`advisor.runner.ranks`);
on SIGINT (Ctrl-C, ``--timeout``) it does the same to all of them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading

from advisor.rundir_io import atomic_write_json


def _failures(error) -> dict:
    failed = {}
    for rank, failure in sorted(error.failures.items()):
        signal_name = failure.signal_name() if failure.exitcode is not None and failure.exitcode < 0 else None
        failed[str(rank)] = {"local_rank": failure.local_rank, "pid": failure.pid, "exit_code": failure.exitcode,
                             "signal": signal_name or None}
    return failed


def _relay_progress() -> str | None:
    """Rank 0's progress, through a named pipe, onto advisor's progress channel (torchrun closes the
    descriptors its ranks would inherit); returns the pipe's folder, for the caller to remove."""
    if "ADVISOR_PROGRESS_FD" not in os.environ:
        return None
    sink = os.fdopen(int(os.environ["ADVISOR_PROGRESS_FD"]), "wb", buffering=0)
    path = os.path.join(tempfile.mkdtemp(prefix="advisor-progress-"), "progress")
    os.mkfifo(path)
    source = os.open(path, os.O_RDWR)  # never blocks, and never ends: every rank may come and go
    os.environ["ADVISOR_PROGRESS_PATH"] = path

    def relay() -> None:
        while chunk := os.read(source, 1 << 14):
            try:
                sink.write(chunk)
            except OSError:
                return

    threading.Thread(target=relay, daemon=True).start()
    return os.path.dirname(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m advisor.runner.launch")
    parser.add_argument("--launch-file", required=True)
    parser.add_argument("launcher_args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args = ns.launcher_args[1:] if ns.launcher_args[:1] == ["--"] else ns.launcher_args

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    pipe_folder = _relay_progress()
    record: dict = {"outcome": "completed", "failed_ranks": {}}
    code = 0
    try:
        run(parse_args(args))
    except ChildFailedError as exc:
        record.update(outcome="rank_failed", failed_ranks=_failures(exc))
        code = 1
    except SignalException as exc:
        record.update(outcome="stopped", signal=exc.sigval.name)
        code = 130
    except Exception as exc:  # the launcher itself failed (rendezvous, bad options)
        record.update(outcome="launcher_failed", error=f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        if pipe_folder:
            shutil.rmtree(pipe_folder, ignore_errors=True)
    atomic_write_json(ns.launch_file, record)
    return code


if __name__ == "__main__":
    sys.exit(main())
