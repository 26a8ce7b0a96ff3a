"""Where one image's bytes live: a file on disk, or a byte range inside an uncompressed tar."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """One candidate image, labelled, before its bytes are looked at.

    `origin` names the image for people (a path, or `archive.tar:member.tar:name.JPEG`) and is
    what reports cite; `path`, `offset` and `size` say how to read it (offset None: a whole file).
    """

    split: str
    synset: str
    filename: str
    origin: str
    path: str
    offset: int | None = None
    size: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # absolute (xmin, ymin, xmax, ymax)

    def sort_key(self) -> tuple[str, str, str]:
        return (self.synset, self.filename, self.origin)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """Something found while listing that will not become a record, and why."""

    origin: str
    reason: str


class UnreadableSource(Exception):
    """The bytes could not be read (permissions, a vanished file, an archive cut short)."""


def read_source(source: ImageSource, open_files: dict[str, object] | None = None) -> bytes:
    """Reads the image bytes; `open_files` caches archive handles across calls in a worker."""
    try:
        if source.offset is None:
            try:
                with open(source.path, "rb") as handle:
                    return handle.read()
            except IsADirectoryError:
                raise UnreadableSource("is a directory, not a file") from None
        handle = None if open_files is None else open_files.get(source.path)
        if handle is None:
            handle = open(source.path, "rb")
            if open_files is not None:
                open_files[source.path] = handle
        handle.seek(source.offset)
        data = handle.read(source.size)
        if len(data) != source.size:
            raise UnreadableSource(
                f"archive ends {source.size - len(data)} bytes before the end of this member"
            )
        return data
    except OSError as error:
        raise UnreadableSource(f"unreadable: {error.strerror or error}") from error


def printable(text: str) -> str:
    """A name safe to put in JSON and logs, even when the file system name is not UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
