"""
Giving freed memory back to the system after a big transient (a million-name list parsed).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_looked = False


def give_back_memory() -> None:
    """
    Asks the C allocator to return the memory freed so far to the system (glibc's
    ``malloc_trim``); does nothing where there is no such call.

    Memory freed by a thread stays with that thread's malloc arena, where the reactor thread's
    next big allocation cannot reuse it: without this, building a million-name list in a thread
    and then rendering it would cost the process both.
    """
    global _trim, _looked
    if not _looked:
        _looked = True
        try:
            _trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError, TypeError):
            _trim = None
    if _trim is not None:
        _trim(0)


__all__ = ["give_back_memory"]
