"""Indexes the original ILSVRC2012 tar files so images are read in place, never unpacked.

`ILSVRC2012_img_train.tar` (138 GB) is an uncompressed tar of 1000 uncompressed class tars
(`n01440764.tar`, ...), each holding that class's JPEGs; `ILSVRC2012_img_val.tar` holds the 50,000
validation JPEGs flat. Because neither level is compressed, every image is a contiguous byte range
of the outer file: we read the tar headers once, record (offset, size) per image, and the workers
later `seek` + `read` exactly those bytes. Nothing is extracted to disk and no class tar is ever
held in memory, so the tar members' names cannot write anything anywhere; unsafe members
(absolute paths, `..`, links, devices) are still refused and reported, as a user would expect.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Iterator

from alexnet_tf.convert.sources import ImageSource, Rejected, printable

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VALIDATION_ARCHIVE = "ILSVRC2012_img_val.tar"


def unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member must be refused, or None. Checked before anything else looks at it."""
    name = member.name
    if name.startswith("/") or posixpath.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return f"refused tar member with an absolute path: {name!r}"
    if ".." in name.replace("\\", "/").split("/"):
        return f"refused tar member with '..' in its path: {name!r}"
    if member.issym() or member.islnk():
        return f"refused tar member that is a link ({member.linkname!r}): {name!r}"
    if member.isdev() or member.isfifo():
        return f"refused tar member that is a device or fifo: {name!r}"
    return None


def _members(
    archive: tarfile.TarFile, archive_label: str, available_bytes: int, rejected: list[Rejected]
) -> Iterator[tarfile.TarInfo]:
    """The safe regular-file members of one tar level.

    `tarfile` ends the iteration quietly when an archive is cut short, so we check ourselves: a
    complete tar ends with zero blocks *inside* the bytes we have, and every member's data must
    fit in them. A truncated tar is reported (its readable members still count), never a crash.
    """
    count = 0
    try:
        for member in archive:
            count += 1
            label = f"{archive_label}:{printable(member.name)}"
            reason = unsafe_member_reason(member)
            if reason:
                rejected.append(Rejected(label, reason))
            elif member.isfile():
                if member.offset_data + member.size > available_bytes:
                    rejected.append(Rejected(label, "archive is cut short inside this member"))
                else:
                    yield member
    except (tarfile.TarError, EOFError, OSError) as error:
        rejected.append(
            Rejected(archive_label, f"archive is damaged after {count} members, the rest is lost: {error}")
        )
        return
    if archive.offset >= available_bytes:
        rejected.append(
            Rejected(archive_label, f"archive is truncated after {count} members (no end-of-archive "
                     "marker); any members after the cut are lost")
        )


def _open_tar(path: str, fileobj=None) -> tarfile.TarFile:
    try:
        # "r:" (no compression) on purpose: offsets are only meaningful in an uncompressed tar.
        return tarfile.open(name=None if fileobj else path, fileobj=fileobj, mode="r:")
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{path} is not an uncompressed tar archive: {error}") from error


def index_train_archive(path: str, rejected: list[Rejected]) -> Iterator[ImageSource]:
    """Yields every image of the tar-of-class-tars, labelled by its class tar's name."""
    base = os.path.basename(path)
    archive_size = os.path.getsize(path)
    with _open_tar(path) as outer:
        for class_member in _members(outer, base, archive_size, rejected):
            class_label = f"{base}:{printable(class_member.name)}"
            stem = posixpath.basename(class_member.name)
            synset = stem[: -len(".tar")] if stem.endswith(".tar") else ""
            if not stem.endswith(".tar"):
                rejected.append(Rejected(class_label, "not a class tar (expected <wnid>.tar)"))
                continue
            class_file = outer.extractfile(class_member)
            try:
                inner = tarfile.open(fileobj=class_file, mode="r:")
            except (tarfile.TarError, OSError, EOFError) as error:
                rejected.append(Rejected(class_label, f"class tar is unreadable, its images are lost: {error}"))
                continue
            with inner:
                for image_member in _members(inner, class_label, class_member.size, rejected):
                    filename = posixpath.basename(image_member.name)
                    yield ImageSource(
                        split="train",
                        synset=synset,
                        filename=filename,
                        origin=f"{class_label}:{printable(image_member.name)}",
                        path=path,
                        offset=class_member.offset_data + image_member.offset_data,
                        size=image_member.size,
                    )


def index_flat_archive(path: str, split: str, rejected: list[Rejected]) -> Iterator[ImageSource]:
    """Yields every member of a flat tar (the validation archive); the caller labels them."""
    base = os.path.basename(path)
    with _open_tar(path) as archive:
        for member in _members(archive, base, os.path.getsize(path), rejected):
            yield ImageSource(
                split=split,
                synset="",
                filename=posixpath.basename(member.name),
                origin=f"{base}:{printable(member.name)}",
                path=path,
                offset=member.offset_data,
                size=member.size,
            )
