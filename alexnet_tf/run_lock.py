"""One run at a time per output folder: the trainer's --model_dir, the converter's --output_dir.

Two runs writing one folder overwrite each other's checkpoints, shards and summaries, and both
report success. The lock is `fcntl.flock` on `<folder>/.lock`: the kernel releases it when the
holder's process ends, however it ends, so a `kill -9` or a crash never leaves a folder locked
and there is nothing to clean up by hand. The holder writes its pid, host, start time and
command into the file, which is how a refused run can name who holds the folder.

Where flock means nothing:
  - `gs://`, `s3://`, `hdfs://` and other remote URLs have no locks at all: the lock is skipped
    with a warning, and one run at a time is up to the user (or the job scheduler).
  - NFS: Linux maps flock onto NFS byte-range locks (NFSv4, or v3 with lockd), which do work
    across clients; a share mounted with `nolock` makes it local to each client, so two
    machines can both take it. Both cases are outside what the tests here can show.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys

from absl import logging

LOCK_FILE = ".lock"


class FolderInUse(Exception):
    """Another live process holds the folder; the message names it."""


def is_remote(path: str) -> bool:
    """A URL (gs://bucket/...) rather than a path of the local or a mounted filesystem."""
    return "://" in path


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return (f"process {holder['pid']} on host {holder['host']}, started "
                f"{holder['started']} ({holder['command']})")
    except (ValueError, KeyError, TypeError):
        return "another process (it has not written its name yet)"


def explain_folder_error(directory: str, error: OSError) -> str:
    """Why `directory` cannot hold a run's output, in words: for the one-line error."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        return "is a file, not a folder"
    parent = os.path.dirname(os.path.abspath(directory))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        return f"is under {parent}, which is a file, not a folder"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"is not writable ({error.strerror})"
    return f"cannot be used: {error.strerror or error}"


class RunLock:
    """Holds `<directory>/.lock` exclusively until `release()` or the end of the process.

    `what` names the kind of run in the refusal ("trainer", "converter"); `flag` names the
    command-line flag the folder came from, so the message points at it.
    """

    def __init__(self, directory: str, *, what: str, flag: str):
        self.directory = directory
        self.what = what
        self.flag = flag
        self.path = os.path.join(directory, LOCK_FILE)
        self._handle = None

    def acquire(self) -> "RunLock":
        """Takes the lock, or raises FolderInUse naming its holder.

        OSError (the folder cannot be created or written) is left to the caller, which knows
        which flag to name.
        """
        if is_remote(self.directory):
            logging.warning("%s=%s is not on a local or mounted filesystem: it cannot be locked, "
                            "so make sure no other %s uses it", self.flag, self.directory,
                            self.what)
            return self
        os.makedirs(self.directory, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            handle.seek(0)
            holder = _describe_holder(handle.read())
            handle.close()
            raise FolderInUse(
                f"{self.flag}={self.directory} is in use by another {self.what}: {holder}. "
                f"Wait for it to end, or stop it, or choose another {self.flag}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(os.path.basename(a) if i == 0 else a
                                for i, a in enumerate(sys.argv))[:300],
        }) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # Closing the file is what drops the flock.
            self._handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
