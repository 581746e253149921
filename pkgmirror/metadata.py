"""
Core metadata of distributions: reading it out of wheels, whole on disk (blocking: run it in a
thread) or piecewise from byte ranges of a remote wheel (pure: the caller fetches the ranges).

Reading a remote wheel takes at most three ranges: the tail (end of central directory, usually
the whole central directory with it), the central directory if the tail missed part of it, and
the METADATA member's local header and data.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

import attrs

# A METADATA file larger than this is not core metadata we want to serve.
MAX_METADATA_BYTES = 16 * 1024 * 1024
# How much of a wheel's end the first range asks for: the central directory of a wheel with a
# few hundred members fits (uv asks for 16 KiB, poetry for 10,000 bytes). Not 64 KiB: an answer
# a little over one 64 KiB loopback segment (an upstream on the same host) waits 40 ms on a
# sendfile upstream for the delayed ACK of the first segment; 60 KiB plus headers fits in one.
TAIL_BYTES = 60 * 1024
# Room for a local header's extra field, which may differ from the central directory's.
LOCAL_EXTRA_SLACK = 1024

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_U32 = 0xFFFFFFFF


class BadWheel(ValueError):
    """The bytes are not a readable wheel (or not the part of one we asked for)."""


def _metadata_choice(names: list[str], filename: str) -> str | None:
    """The ``*.dist-info/METADATA`` member to serve, preferring the one the file name names."""
    candidates = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if not candidates:
        return None
    stem = "-".join(filename.split("-")[:2]).lower()
    candidates.sort(key=lambda n: not n.lower().startswith(stem))
    return candidates[0]


def extract_core_metadata(path: str, filename: str) -> bytes | None:
    """The ``*.dist-info/METADATA`` of the wheel at ``path``, or None when it has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            chosen = _metadata_choice(list(infos), filename)
            if chosen is None:
                return None
            info = infos[chosen]
            if info.file_size > MAX_METADATA_BYTES:
                return None
            return archive.read(info)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return None


@attrs.frozen
class ZipMember:
    """A member as the central directory describes it."""

    name: str
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int

    def local_span(self) -> tuple[int, int]:
        """(offset, length) of a range that holds the local header and the data, usually."""
        length = 30 + len(self.name.encode("utf-8")) + LOCAL_EXTRA_SLACK + self.compressed_size
        return self.header_offset, length


def central_directory_span(tail: bytes, tail_offset: int) -> tuple[int, int]:
    """
    (offset, size) of the central directory, from the last ``len(tail)`` bytes of the file,
    which start at ``tail_offset``. Raises BadWheel when the tail has no end record.
    """
    at = tail.rfind(_EOCD)
    while at != -1 and len(tail) - at < 22:
        at = tail.rfind(_EOCD, 0, at)
    if at == -1:
        raise BadWheel("no end of central directory record in the tail")
    size, offset = struct.unpack_from("<II", tail, at + 12)
    if offset == _U32 or size == _U32:
        locator = at - 20
        if locator < 0 or tail[locator : locator + 4] != _EOCD64_LOCATOR:
            raise BadWheel("zip64 wheel without its locator in the tail")
        (record_offset,) = struct.unpack_from("<Q", tail, locator + 8)
        record = record_offset - tail_offset
        if record < 0 or tail[record : record + 4] != _EOCD64:
            raise BadWheel("zip64 end record not in the tail")
        size, offset = struct.unpack_from("<QQ", tail, record + 40)
    return offset, size


def find_member(central: bytes, filename: str) -> ZipMember | None:
    """The METADATA member listed in the central directory ``central``, or None."""
    members: dict[str, ZipMember] = {}
    at = 0
    while at + 46 <= len(central) and central[at : at + 4] == _CENTRAL:
        (
            _made,
            _needed,
            flags,
            method,
            _time,
            _date,
            crc,
            csize,
            usize,
            nlen,
            elen,
            clen,
            _disk,
            _iattr,
            _eattr,
            offset,
        ) = struct.unpack_from("<HHHHHHIIIHHHHHII", central, at + 4)
        raw_name = central[at + 46 : at + 46 + nlen]
        extra = central[at + 46 + nlen : at + 46 + nlen + elen]
        if at + 46 + nlen + elen + clen > len(central):
            raise BadWheel("central directory truncated")
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        if _U32 in (csize, usize, offset):
            usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
        members[name] = ZipMember(name, method, crc, csize, usize, offset)
        at += 46 + nlen + elen + clen
    chosen = _metadata_choice(list(members), filename)
    return None if chosen is None else members[chosen]


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + length]
        if tag == 1:
            values = []
            for i in range(0, len(body) - 7, 8):
                values.append(struct.unpack_from("<Q", body, i)[0])
            it = iter(values)
            if usize == _U32:
                usize = next(it, usize)
            if csize == _U32:
                csize = next(it, csize)
            if offset == _U32:
                offset = next(it, offset)
            break
        at += 4 + length
    return usize, csize, offset


def member_bytes(local: bytes, member: ZipMember) -> bytes | int:
    """
    The member's uncompressed bytes from ``local`` (the file from ``member.header_offset`` on),
    or, when ``local`` is too short, how many bytes from that offset are needed. Raises BadWheel
    when the bytes are not that member, do not decompress or fail their CRC.
    """
    if member.size > MAX_METADATA_BYTES:
        raise BadWheel("METADATA too large")
    if len(local) < 30:
        return 30
    if local[:4] != _LOCAL:
        raise BadWheel("no local header where the central directory points")
    nlen, elen = struct.unpack_from("<HH", local, 26)
    start = 30 + nlen + elen
    end = start + member.compressed_size
    if len(local) < end:
        return end
    data = local[start:end]
    if member.method == 0:
        out = data
    elif member.method == 8:
        try:
            inflater = zlib.decompressobj(-15)
            out = inflater.decompress(data, MAX_METADATA_BYTES + 1)
        except zlib.error as e:
            raise BadWheel(f"METADATA does not inflate: {e}") from None
    else:
        raise BadWheel(f"unsupported compression method {member.method}")
    if len(out) != member.size or zlib.crc32(out) != member.crc:
        raise BadWheel("METADATA fails its size or CRC check")
    return out


__all__ = [
    "MAX_METADATA_BYTES",
    "TAIL_BYTES",
    "BadWheel",
    "ZipMember",
    "central_directory_span",
    "extract_core_metadata",
    "find_member",
    "member_bytes",
]
