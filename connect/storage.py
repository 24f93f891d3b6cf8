"""A table's files as its FileIO sees them: listed and deleted the same way on a local disk and on S3.

pyiceberg's FileIO reads, writes and deletes one file at a time but has no listing, which orphan
cleanup needs (Iceberg's own ``DeleteOrphanFiles`` action lists the table's location through Hadoop's
FileSystem for the same reason). ``PyArrowFileIO`` keeps one pyarrow ``FileSystem`` per scheme, built
from the catalog's properties (``s3.endpoint``, credentials, region), and that filesystem lists: so
listing goes through the very filesystem the table's reads and writes use, and every delete through
``FileIO.delete``. Nothing here touches a path on its own.

Paths are compared by ``file_key``: the same file may be written ``file:/x``, ``file:///x`` or ``/x``
in metadata, and ``s3a://b/k`` or ``s3://b/k``. A key is also compared percent-decoded, so an encoding
difference can only keep a file, never delete one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO

from .exceptions import ConnectError

# Object stores that pyarrow lists by "bucket/key" under these schemes (one namespace: s3a and s3n are
# Hadoop's names for the same buckets).
OBJECT_SCHEMES = {"s3": "s3", "s3a": "s3", "s3n": "s3", "gs": "gs", "gcs": "gs", "oss": "oss"}


@dataclass(frozen=True)
class StoredFile:
    """A file under a table's location: where it is (as the FileIO takes it), its size and modification time."""

    location: str
    size: int
    mtime: float

    @property
    def key(self) -> str:
        return file_key(self.location)


def file_key(location: str) -> str:
    """A comparable name for a file: ``/path`` for a local file, ``s3://bucket/key`` for an object."""
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return parts.path
    if scheme == "":
        return location
    return f"{OBJECT_SCHEMES.get(scheme, scheme)}://{parts.netloc}{parts.path}"


def keys(locations: set[str]) -> set[str]:
    """The keys of ``locations``, each also percent-decoded (a spelling difference keeps a file)."""
    found = {file_key(location) for location in locations}
    return found | {unquote(key) for key in found}


def list_files(io: FileIO, root: str) -> list[StoredFile]:
    """Every file under ``root`` (a table's location), through the table's own filesystem."""
    from pyarrow.fs import FileSelector, FileType

    if not isinstance(io, PyArrowFileIO):
        raise ConnectError(
            f"cannot list {root} through {type(io).__name__}: orphan cleanup needs pyiceberg's PyArrowFileIO "
            "(the default; set py-io-impl=pyiceberg.io.pyarrow.PyArrowFileIO)"
        )
    scheme, netloc, path = io.parse_location(root, io.properties)
    filesystem = io.fs_by_scheme(scheme, netloc)
    try:
        infos = filesystem.get_file_info(FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
    except OSError as exc:
        raise ConnectError(f"cannot list {root}: {str(exc).splitlines()[0][:200]}") from exc
    prefix = "" if scheme == "file" else f"{scheme}://"
    return [
        StoredFile(prefix + info.path, int(info.size or 0), info.mtime.timestamp() if info.mtime else 0.0)
        for info in infos
        if info.type == FileType.File
    ]


def delete_file(io: FileIO, location: str) -> bool:
    """Delete one file through the FileIO; False when it was already gone (the catalog removes old
    metadata files itself, after ``write.metadata.previous-versions-max``)."""
    try:
        io.delete(location)
    except FileNotFoundError:
        return False
    return True
