"""README's commands for your own images run as shown, on the folders they name.

They run in a folder standing for the clone (tests/readme_commands.py), on photos/ made there:
three classes of coloured photos, enough for paper.cfg's batch of 128. Training adds only
--image_size=67 and --epochs=1, to take seconds.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.readme_commands import run_command, section_commands, user_folder, write_photos

CLASSES = ("cats", "dogs", "my hamsters")
SHRINK = ("--image_size=67", "--epochs=1")


@pytest.mark.slow
def test_your_own_images_commands_run_as_shown(tmp_path):
    folder = user_folder(str(tmp_path / "clone"))
    write_photos(os.path.join(folder, "photos"), CLASSES, per_class=50)
    write_photos(os.path.join(folder, "loose"), ("one",), per_class=1, seed=7)
    os.replace(os.path.join(folder, "loose", "one", "photo 0.jpg"),
               os.path.join(folder, "photo.jpg"))
    commands = section_commands("Your own images")
    programs = [command[1] if command[1] != "-m" else command[2] for command in commands]
    assert programs == ["tools/build_tfrecords.py", "alexnet_tf.train", "alexnet_tf.export",
                        "alexnet_tf.predict", "alexnet_tf.evaluate"]
    outputs = {}
    for program, command in zip(programs, commands):
        extra = SHRINK if program == "alexnet_tf.train" else ()
        result = run_command(command, folder, *extra)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        assert "Traceback" not in result.stderr
        outputs[program] = result.stdout

    with open(os.path.join(folder, "records", "labels.txt")) as handle:
        assert handle.read().splitlines() == list(CLASSES)
    with open(os.path.join(folder, "run", "summary.json")) as handle:
        assert json.load(handle)["epochs_completed"] == 1
    predicted = outputs["alexnet_tf.predict"].splitlines()
    assert predicted[0] == "photo.jpg"
    assert {line.split("%  ")[1] for line in predicted[1:4]} == set(CLASSES)
    for name in CLASSES:
        assert name in outputs["alexnet_tf.evaluate"]
