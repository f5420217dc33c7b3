"""A torch.distributed launch, as advisor starts it: torchrun's own launcher with advisor's runner in each rank.

``advisor profile --nproc-per-node N SCRIPT`` launches N ranks on this machine (``torchrun --standalone``);
``advisor profile -- torchrun [LAUNCHER OPTIONS] SCRIPT ARGS`` keeps the user's own launcher options and puts
``-m advisor.runner --distributed ...`` where the script was. The launcher runs in advisor's child process
(:mod:`advisor.runner.launch`), which notes each rank that failed and how.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from advisor.errors import UsageError

LAUNCHER_MODULE = "torch.distributed.run"
#: the file the launcher's process writes the failed ranks into (exit code, signal), in the run directory
LAUNCH_FILE = "launch.json"


@dataclasses.dataclass
class Launch:
    """The launcher's own options, the script each rank runs, and its arguments."""

    launcher_args: list[str]
    target: str
    is_module: bool
    args: list[str]
    nproc_per_node: str
    nnodes: str = "1"

    def command(self, runner_command: list[str], launch_file: str) -> list[str]:
        """The command advisor runs: the launcher, each rank running ``runner_command`` (``python -m advisor.runner
        ...``) with ``--distributed``."""
        return [sys.executable, "-m", "advisor.runner.launch", "--launch-file", launch_file, "--",
                *self.launcher_args, "-m", "advisor.runner", "--distributed", *runner_command[3:]]

    def describe(self) -> dict:
        return {"launcher": "torchrun", "launcher_args": self.launcher_args, "nproc_per_node": self.nproc_per_node,
                "nnodes": self.nnodes}


def on_this_machine(nproc_per_node: int, target: str, is_module: bool, args: list[str]) -> Launch:
    """``--nproc-per-node N``: N ranks on this machine, a rendezvous of their own."""
    return Launch(["--nproc-per-node", str(nproc_per_node), "--standalone"], target, is_module, list(args),
                  str(nproc_per_node))


def is_launcher(command: list[str]) -> bool:
    """Whether ``command`` starts torchrun (``torchrun ...`` or ``python -m torch.distributed.run ...``)."""
    if not command:
        return False
    if os.path.basename(command[0]) == "torchrun":
        return True
    return (os.path.basename(command[0]).startswith("python") and command[1:3] == ["-m", LAUNCHER_MODULE])


def wrapped(command: list[str]) -> Launch:
    """The user's own torchrun command, read with torchrun's own parser; raise UsageError for one advisor
    cannot profile."""
    from torch.distributed.run import get_args_parser

    argv = command[1:] if os.path.basename(command[0]) == "torchrun" else command[3:]
    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        ns = parser.parse_args(argv)
    except SystemExit:
        raise UsageError(f"advisor profile: torchrun cannot read {' '.join(command)}") from None
    except Exception as exc:
        raise UsageError(f"advisor profile: torchrun cannot read {' '.join(command)}: {exc}") from None
    if ns.no_python:
        raise UsageError("advisor profile: torchrun --no-python runs no Python script for advisor to profile")
    script_args = list(ns.training_script_args)
    script_args = script_args[1:] if script_args[:1] == ["--"] else script_args
    launcher_args = argv[:len(argv) - 1 - len(ns.training_script_args)]
    launcher_args = [a for a in launcher_args if a not in ("-m", "--module")]
    return Launch(launcher_args, ns.training_script, bool(ns.module), script_args, str(ns.nproc_per_node),
                  str(ns.nnodes))
