"""What a profiling run is asked to do: its options, the checked target, and the ``meta.json`` it starts with."""

from __future__ import annotations

import ast
import dataclasses
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from advisor import __version__
from advisor.errors import NotAPythonFile, ScriptNotFound, ScriptSyntaxError

if TYPE_CHECKING:
    from advisor.launcher import Launch


@dataclasses.dataclass
class ProfileOptions:
    target: str
    args: list[str]
    is_module: bool = False
    warmup: int = 5
    #: recorded steps: torch's own stop and export of the recording grow with them (0.5 s for 10 steps of the CNN
    #: example on 2 cores); 5 found the same hot ops, findings and estimates as 10 on every example
    steps: int = 5
    timeout: float | None = None
    out: Path | None = None
    blocked_plugins: tuple[str, ...] = ()
    no_findings: tuple[str, ...] = ()
    script_stdout_to_stderr: bool = False
    keep_running: bool = False
    #: ``--with-stack``: the window's trace records the Python call stacks too
    with_stack: bool = False
    command_line: tuple[str, ...] = ()
    techniques: list[str] | None = None
    measure: bool = True
    trial_budget: float = 60.0
    pairs: str = "gaining"
    #: ``--apply``: techniques to apply to the running script, compared with a baseline run
    apply: list[str] | None = None
    cwd: Path | None = None  # the script's working directory (default: ours)
    #: seconds one recording may last, and megabytes it may add to the script's peak memory
    record_limit_s: float = 60.0
    record_limit_mb: float = 1024.0
    #: a torch.distributed run: torchrun's launch of the target (:class:`advisor.launcher.Launch`)
    launch: Launch | None = None


def check_script(path_text: str) -> Path:
    """Raise the matching error when ``path_text`` is not a runnable Python script."""
    path = Path(path_text)
    if not path.exists():
        raise ScriptNotFound(f"script not found: {path_text}")
    if path.is_dir():
        raise NotAPythonFile(f"not a Python file: {path_text} is a directory")
    try:
        source = path.read_bytes().decode("utf-8")
        if "\0" in source:
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise NotAPythonFile(f"not a Python file: {path_text} is not text") from None
    except OSError as exc:
        raise ScriptNotFound(f"cannot read {path_text}: {exc.strerror}") from None
    first_line = source.split("\n", 1)[0]
    if path.suffix not in (".py", ".pyw") and not (first_line.startswith("#!") and "python" in first_line):
        raise NotAPythonFile(f"not a Python file: {path_text} (expected a .py file or a python shebang)")
    try:
        ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ScriptSyntaxError(f"syntax error in {path_text}, line {exc.lineno}: {exc.msg}") from None
    return path


def check_target(options: ProfileOptions) -> None:
    """Raise the matching error when the options' script cannot be run (a module is checked by the runner)."""
    if not options.is_module:
        check_script(options.target)


def new_meta(options: ProfileOptions, collector_status: dict) -> dict:
    """The run's ``meta.json`` as it starts."""
    return {
        "advisor_version": __version__,
        "command": list(options.command_line),
        "target": {"kind": "module" if options.is_module else "script", "name": options.target,
                   "args": list(options.args)},
        "cwd": str(options.cwd or os.getcwd()),
        "settings": {"warmup": options.warmup, "steps": options.steps, "timeout": options.timeout,
                     "record_limit_s": options.record_limit_s, "record_limit_mb": options.record_limit_mb,
                     "keep_running": options.keep_running, "with_stack": options.with_stack,
                     "blocked_plugins": list(options.blocked_plugins),
                     "no_findings": list(options.no_findings),
                     "techniques": list(options.techniques) if options.techniques else None,
                     "measure": options.measure},
        "host": _host(),
        "python": sys.version.split()[0],
        "collectors": collector_status,
        "started_at": time.time(),
        "outcome": "running",
    }


def _host() -> dict:
    import psutil

    mem = psutil.virtual_memory()
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "memory_bytes": mem.total}
