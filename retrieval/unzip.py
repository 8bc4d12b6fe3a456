"""Reading zip-based documents (DOCX) without trusting the archive: decompression bombs are
refused from the archive's directory, and again while the members are read."""

from __future__ import annotations

import io
import zipfile

from quarry.retrieval.errors import CorruptDocumentError, DocumentTooLargeError

_BLOCK = 64 * 1024  # decompressed bytes asked of a member at a time
_RATIO_FLOOR = 1024 * 1024  # archives unpacking to less than this are never too compressed
_MAX_MEMBERS = 10_000


def unpacked_limit(size: int, max_bytes: int, max_ratio: int) -> int:
    """The most bytes an archive of `size` bytes may unpack to: `max_ratio` times its size
    (at least 1 MiB, since small archives of repetitive XML compress well), at most `max_bytes`."""
    return min(max_bytes, max(_RATIO_FLOOR, max_ratio * size))


def read_members(data: bytes, name: str, max_bytes: int, max_ratio: int, kind: str = "zip") -> dict[str, bytes]:
    """Every file member of the zip archive `data`, refusing archives that unpack past
    `unpacked_limit`. The sizes the directory declares are checked first; members are then
    read in bounded blocks and counted, so a directory that lies cannot make us decompress
    more than the limit."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise CorruptDocumentError(f"{name}: corrupt {kind} file, not a readable zip archive ({exc})") from None
    if len(infos) > _MAX_MEMBERS:
        raise CorruptDocumentError(f"{name}: {len(infos):,} members in the archive; at most {_MAX_MEMBERS:,}")
    limit = unpacked_limit(len(data), max_bytes, max_ratio)
    declared = sum(i.file_size for i in infos)
    if declared > limit:
        raise DocumentTooLargeError(_too_big(name, declared, len(data), max_bytes, max_ratio))
    members: dict[str, bytes] = {}
    total = 0
    for info in infos:
        buf = bytearray()
        try:
            with archive.open(info) as member:
                while block := member.read(_BLOCK):
                    buf += block
                    total += len(block)
                    if total > limit or len(buf) > info.file_size:
                        raise DocumentTooLargeError(_too_big(name, total, len(data), max_bytes, max_ratio))
        except DocumentTooLargeError:
            raise
        except Exception as exc:  # zipfile lets zlib.error, NotImplementedError and others through
            raise CorruptDocumentError(
                f"{name}: corrupt {kind} file, unreadable member {info.filename!r} ({type(exc).__name__}: {exc})"
            ) from None
        members[info.filename] = bytes(buf)
    return members


def repack(members: dict[str, bytes]) -> bytes:
    """The members as an uncompressed zip archive, which a parser can open without
    decompressing anything."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _too_big(name: str, unpacked: int, size: int, max_bytes: int, max_ratio: int) -> str:
    return (
        f"{name}: the archive unpacks to at least {unpacked:,} bytes from {size:,} "
        f"(about {unpacked / max(size, 1):,.0f} times its size); the limits are {max_ratio} times "
        f"(ingest.max_zip_ratio) and {max_bytes:,} bytes (ingest.max_unzipped_bytes)"
    )
