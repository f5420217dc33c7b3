"""The process's heap as glibc's malloc keeps it: how much is in use, and handing freed memory back.

Elsewhere than glibc both answer nothing: ``heap_in_use`` gives None and ``release_memory`` does nothing.
"""

from __future__ import annotations

import ctypes


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc_function(name: str, restype):
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc, or too old a one (mallinfo2: glibc 2.33)
        return None
    function.restype = restype
    return function


_mallinfo2 = _libc_function("mallinfo2", _MallInfo2)
_malloc_trim = _libc_function("malloc_trim", ctypes.c_int)


def heap_in_use() -> int | None:
    """Bytes that malloc has handed out and not had back (glibc), else None. Unlike the resident memory it does
    not count freed memory that malloc keeps, which a recording's small allocations, interleaved with a
    training step's large ones, make grow by tens of MB a step."""
    if _mallinfo2 is None:
        return None
    info = _mallinfo2()
    return info.uordblks + info.hblkhd


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise, under what is allocated next): after
    the pre-step recording stops, after a trace's load, after the call tree and after the hot ops (a 200 MB trace:
    23 MB held after the load, 33 MB after the call tree)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
