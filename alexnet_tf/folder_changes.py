"""Taking back what a refused run wrote into its output folder.

A run refused before it trains (no shards, other classes, a bad resume) has by then created
--model_dir, its `.lock` and sometimes `labels.txt`. Left behind, they read as a run that once
happened there, and a later run with the right flags refuses the folder as belonging to
another data set. `FolderChanges` remembers what the folder held before the run, so a refusal
can remove exactly what the run added: the folder itself (and the parents it created) when it
did not exist, else only the new entries.
"""

from __future__ import annotations

import os

import tensorflow as tf


class FolderChanges:
    """What `folder` held when the run began; `take_back()` removes what was added since."""

    def __init__(self, folder: str):
        self.folder = folder
        # The outermost folder that does not exist yet: makedirs creates it and all below.
        self._first_created = None
        path = os.path.abspath(folder) if "://" not in folder else folder
        while path and not tf.io.gfile.exists(path):
            self._first_created = path
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        self._entries = (set(tf.io.gfile.listdir(folder))
                         if self._first_created is None and tf.io.gfile.isdir(folder) else set())

    def take_back(self) -> None:
        """Removes what the run added; errors are ignored (the refusal is what matters)."""
        try:
            if self._first_created is not None:
                if tf.io.gfile.exists(self._first_created):
                    tf.io.gfile.rmtree(self._first_created)
                return
            if not tf.io.gfile.isdir(self.folder):
                return
            for name in set(tf.io.gfile.listdir(self.folder)) - self._entries:
                path = os.path.join(self.folder, name.rstrip("/"))
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)
        except (tf.errors.OpError, OSError):
            pass
