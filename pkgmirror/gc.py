"""
Collecting blobs nothing references: what a crash between a blob's commit and its record
leaves behind, or a fill that finished after its file was deleted.

Runs only while no server uses the store: a running server may have just committed bytes whose
record it is about to write (and an upload of bytes already stored writes only its record), so
a blob unreferenced at one moment may be referenced the next. ``pkgmirror gc`` holds the
serverdir's lock for the whole walk.
"""

from __future__ import annotations

import attrs

from pkgmirror.interfaces import IBlobStore, IStorage

PREFIXES = tuple(f"{i:02x}" for i in range(256))


@attrs.frozen
class GcReport:
    blobs: int
    """Blobs found in the store."""
    unreferenced: tuple[str, ...]
    """Those no record references: removed, unless it was a dry run."""
    unreferenced_bytes: int
    stale_spools: int
    """Temporary files of interrupted writes, removed (not counted in a dry run)."""


async def collect(storage: IStorage, blobs: IBlobStore, *, dry_run: bool = False) -> GcReport:
    """Walks the store in 256 steps, so memory stays bounded by one step's blobs."""
    spools = 0 if dry_run else await blobs.discard_stale_spools()
    seen = 0
    found: list[str] = []
    size = 0
    for prefix in PREFIXES:
        names = await blobs.list_prefix(prefix)
        seen += len(names)
        if not names:
            continue
        for sha256 in await storage.unreferenced(names):
            size += await blobs.size(sha256) or 0
            if not dry_run:
                await blobs.delete(sha256)
            found.append(sha256)
    return GcReport(seen, tuple(found), size, spools)
