"""What the child notes about its interpreter: torch and its devices, and which source files are the user's."""

from __future__ import annotations

import os
import sys


def environment(torch) -> dict:
    env = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": p.name, "total_memory": p.total_memory,
                                "compute_capability": f"{p.major}.{p.minor}"})
    return env


def user_files(extra: list[str]) -> dict[str, str]:
    """Source files of the user's code, keyed as the profiler's Python tracer names them.

    The tracer strips the longest ``sys.path`` prefix from a file name, so user code and library
    code look alike in the trace; this map says which names are the user's.
    """
    import sysconfig

    library_roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                   sysconfig.get_paths()["stdlib"],
                                                   sysconfig.get_paths()["purelib"],
                                                   sysconfig.get_paths()["platlib"]) if p}
    advisor_root = os.path.realpath(os.path.dirname(os.path.dirname(__file__)))
    roots = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}, key=len, reverse=True)
    files = {}
    filenames = [getattr(module, "__file__", None) for module in list(sys.modules.values())] + extra
    for filename in filenames:
        if not filename or not filename.endswith(".py") or not os.path.isabs(filename):
            continue
        real = os.path.realpath(filename)
        if real.startswith(advisor_root) or any(real.startswith(root + os.sep) for root in library_roots):
            continue
        files[_tracer_name(real, roots)] = real
    return files


def _tracer_name(path: str, roots: list[str]) -> str:
    for root in roots:
        if path.startswith(root + os.sep):
            return path[len(root) + 1:]
    return path
