"""Taking back what a refused run wrote into its output folder.

A run refused before it trains (no shards, other classes, a bad resume) has by then created
--model_dir, its `.lock` and sometimes `labels.txt`. Left behind, they read as a run that once
happened there, and a later run with the right flags refuses the folder as belonging to
another data set. `FolderChanges` remembers what the folder held before the run, so a refusal
can remove what the run added: the entries it writes before training that were not there, then
the folders it created (the model dir and its missing parents), each only if left empty. It
never removes anything else, so a file another program put there meanwhile stays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import tensorflow as tf


class FolderChanges:
    """What `folder` held when the run began; `take_back()` removes what the run added.

    `names` are the entries the run may write there before it trains.
    """

    def __init__(self, folder: str, names: Iterable[str]):
        self.folder = folder
        self.names = set(names)
        # The folders that do not exist yet, innermost first: makedirs creates them all.
        self._created = []
        path = folder if "://" in folder else os.path.abspath(folder)
        while path and not tf.io.gfile.exists(path):
            self._created.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        self._entries = (set(tf.io.gfile.listdir(folder))
                         if not self._created and tf.io.gfile.isdir(folder) else set())

    def take_back(self) -> None:
        """Removes what the run added; errors are ignored (the refusal is what matters)."""
        try:
            if not tf.io.gfile.isdir(self.folder):
                return
            for name in set(tf.io.gfile.listdir(self.folder)) - self._entries:
                if name.rstrip("/") not in self.names:
                    continue
                path = os.path.join(self.folder, name.rstrip("/"))
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)
            for path in self._created:
                if tf.io.gfile.isdir(path) and not tf.io.gfile.listdir(path):
                    tf.io.gfile.rmtree(path)
        except (tf.errors.OpError, OSError):
            pass
