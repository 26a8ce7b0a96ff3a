"""README's commands for your own images run as shown, on the folders they name, and the
class names travel from the folders to the served answer.

They run in a folder standing for the clone (tests/readme_commands.py), on photos/ made there:
three classes of coloured photos named with a space, a digit and a non-ASCII letter. Training
adds only --image_size=67 and --epochs=1, to take seconds. The trainer takes --num_classes from
the records' labels.txt and leaves labels.txt beside model.keras; export finds it there, and
the SavedModel's `synsets` output, `predict` and `evaluate --per_class` name the classes.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import tensorflow as tf

from tests.readme_commands import run_command, section_commands, user_folder, write_photos

# In code-point order, as labels.txt lists them ("Ä" sorts after "z").
CLASSES = ("my cats", "zebra 2", "Äpfel")
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
    outputs, errors = {}, {}
    for program, command in zip(programs, commands):
        extra = SHRINK if program == "alexnet_tf.train" else ()
        result = run_command(command, folder, *extra)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        assert "Traceback" not in result.stderr
        outputs[program], errors[program] = result.stdout, result.stderr
    # 50 photos a class, 45 of them for training: the trainer says at the start that this is
    # too few to learn from scratch and names the fine-tuning route (issue 19).
    warning = [line for line in errors["alexnet_tf.train"].splitlines()
               if "training photos for 3 classes" in line]
    assert len(warning) == 1 and "fine-tune" in warning[0] and "--init_from" in warning[0], \
        errors["alexnet_tf.train"][-3000:]

    with open(os.path.join(folder, "records", "labels.txt")) as handle:
        assert handle.read().splitlines() == list(CLASSES)
    with open(os.path.join(folder, "run", "summary.json")) as handle:
        assert json.load(handle)["epochs_completed"] == 1
    with open(os.path.join(folder, "run", "labels.txt"), encoding="utf-8") as handle:
        assert handle.read().splitlines() == list(CLASSES)

    serve = tf.saved_model.load(os.path.join(folder, "serving", "1")).signatures["serving_default"]
    with open(os.path.join(folder, "photo.jpg"), "rb") as handle:
        answer = serve(image_bytes=tf.constant([handle.read()]))
    served = [name.decode("utf-8") for name in answer["synsets"][0].numpy()]
    assert served == [CLASSES[i] for i in answer["classes"][0].numpy()]
    assert sorted(served) == sorted(CLASSES)
    predicted = outputs["alexnet_tf.predict"].splitlines()
    assert predicted[0] == "photo.jpg"
    ranked = [re.match(r"^  ([1-3])\. +\d+\.\d\d%  (.+)$", line) for line in predicted[1:4]]
    assert [match.group(2) for match in ranked] == served, predicted
    rows = [line.split(None, 3) for line in outputs["alexnet_tf.evaluate"].splitlines()
            if line[:7].strip().isdigit()]
    assert [(int(row[0]), row[3]) for row in rows] == list(enumerate(CLASSES))
    # The per-class rows add up to what evaluate printed for the whole set.
    evaluated = outputs["alexnet_tf.evaluate"]
    images = int(re.search(r"^(\d+) validation images", evaluated, re.M).group(1))
    top1 = float(re.search(r"^top-1 accuracy (\d\.\d+)", evaluated, re.M).group(1))
    assert sum(int(row[1]) for row in rows) == images and all(int(row[1]) > 0 for row in rows)
    assert sum(int(row[1]) * float(row[2]) for row in rows) / images == pytest.approx(top1, abs=1e-3)
