"""What users type keeps working across the package's layout: commands, console scripts, the Python
names README shows, and model.keras files saved under the old layout. And the package map in
alexnet_tf/__init__.py names every module there is."""

import ast
import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import alexnet_tf
import alexnet_tf.model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "alexnet_tf")

# Each command a user types, and flags its `--help` must list (absl lists the main module's flags).
COMMANDS = {
    "train": (["-m", "alexnet_tf.train"], ["--data_dir", "--model_dir", "--epochs", "--init_from"]),
    "export": (["-m", "alexnet_tf.export"], ["--model", "--export_base", "--precision"]),
    "evaluate": (["-m", "alexnet_tf.evaluate"], ["--data_dir", "--model", "--ten_crop"]),
    "predict": (["-m", "alexnet_tf.predict"], ["--model", "--true_class"]),
    "import_weights": (["-m", "alexnet_tf.import_weights"], ["--format", "--weights", "--output"]),
    "convert": (["-m", "alexnet_tf.convert"], ["--input_dir", "--output_dir", "--layout"]),
    "build_tfrecords": (["tools/build_tfrecords.py"], ["--input_dir", "--output_dir", "--layout"]),
}


def as_console_script(target: str, name: str) -> list[str]:
    """What pip's wrapper in bin/ does: import the entry point, run it with argv[0] the script."""
    module, attribute = target.split(":")
    return ["-c", f"import sys; from {module} import {attribute}; "
                  f"sys.argv[0] = '/venv/bin/{name}'; sys.exit({attribute}())"]


# The console scripts setup.py installs, and the command whose flags each must list.
CONSOLE_SCRIPTS = {
    "alexnet-export": ("alexnet_tf.export.exporter:run", "export"),
    "alexnet-predict": ("alexnet_tf.predict:run", "predict"),
    "alexnet-import-weights": ("alexnet_tf.import_weights:run", "import_weights"),
    "alexnet-build-tfrecords": ("alexnet_tf.convert.cli:run", "convert"),
}
COMMANDS.update({name: (as_console_script(target, name), COMMANDS[command][1])
                 for name, (target, command) in CONSOLE_SCRIPTS.items()})


def test_every_command_a_user_types_runs_and_lists_its_flags():
    environment = dict(os.environ, PYTHONPATH=REPO)
    # Started together: each spends seconds importing TensorFlow.
    processes = {name: subprocess.Popen([sys.executable, *args, "--help"], cwd=REPO, env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for name, (args, _) in COMMANDS.items()}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=300)
        assert "Traceback" not in output, f"{name}: {output[-2000:]}"
        listed = {"--" + name for name in re.findall(r"^  --(?:\[no\])?(\w+)", output, re.M)}
        missing = [flag for flag in COMMANDS[name][1] if flag not in listed]
        assert not missing, f"`{' '.join(COMMANDS[name][0])} --help` does not list {missing}"


def console_scripts() -> dict[str, str]:
    """setup.py's console_scripts, read from its source: what `pip install` turns into commands."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [element.value for element in value.elts]
                    return dict(entry.replace(" ", "").split("=", 1) for entry in entries)
    raise AssertionError("setup.py has no console_scripts")


CONSOLE_SCRIPT_TARGETS = """
import json, sys
for target in json.loads(sys.argv[1]).values():
    module_name, attribute = target.split(":")
    module = __import__(module_name, fromlist=[attribute])
    print(target, callable(getattr(module, attribute, None)))
"""


def test_every_console_script_names_a_callable():
    scripts = console_scripts()
    assert scripts == {name: target for name, (target, _) in CONSOLE_SCRIPTS.items()}
    # In a process of its own: the modules define absl flags that other tests' modules share.
    result = subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT_TARGETS, json.dumps(scripts)],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(result.stdout.split("\n")[:-1]) == sorted(f"{target} True"
                                                           for target in scripts.values())


def test_the_python_names_readme_shows():
    from alexnet_tf.model import GroupedConv2D, LocalResponseNormalization, build_alexnet

    assert issubclass(GroupedConv2D, keras.layers.Conv2D)
    assert issubclass(LocalResponseNormalization, keras.layers.Layer)
    model = build_alexnet(num_classes=3, image_size=67)
    assert model.output_shape == (None, 3)
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert "alexnet_tf.model.build_alexnet" in readme


def rewrite_layer_module(source: str, target: str, old_module: str) -> None:
    """A copy of a .keras file whose config names the custom layers' module as an older layout did."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "config.json":
                text = data.decode("utf-8")
                assert '"module": "alexnet_tf.model.layers"' in text
                data = text.replace('"module": "alexnet_tf.model.layers"',
                                    f'"module": "{old_module}"').encode("utf-8")
            copy.writestr(item, data)


LOAD_IN_A_FRESH_PROCESS = """
import sys, numpy as np, keras
import alexnet_tf.model  # registers the custom layers, as README says
image = np.load(sys.argv[1])
for path in sys.argv[2:]:
    model = keras.saving.load_model(path)
    print(path, repr(model.predict(image, verbose=0).tolist()))
"""


def test_model_files_of_this_and_the_old_layout_load_in_a_users_script(tmp_path):
    # Keras 3 finds a custom layer by its registered name ("alexnet_tf>LocalResponseNormalization"),
    # never by the module the file names (it imports only keras' own), so files saved before the
    # layout moved the layers (module "alexnet_tf.layers") load as new ones do.
    keras.utils.set_random_seed(0)
    model = alexnet_tf.model.build_alexnet(num_classes=3, image_size=67)
    new_file, old_file = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
    model.save(new_file)
    rewrite_layer_module(new_file, old_file, "alexnet_tf.layers")  # as saved before the move
    image = np.random.default_rng(0).uniform(0, 255, (2, 67, 67, 3)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    expected = model.predict(image, verbose=0)
    result = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(tmp_path / "image.npy"),
                             new_file, old_file], cwd=str(tmp_path), capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    for path in (new_file, old_file):
        np.testing.assert_allclose(np.array(ast.literal_eval(lines[path])), expected, rtol=1e-5,
                                   atol=1e-6)


def package_entries() -> set[str]:
    entries = set()
    for name in os.listdir(PACKAGE):
        path = os.path.join(PACKAGE, name)
        if name.endswith(".py") and name != "__init__.py":
            entries.add(name[:-3])
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            entries.add(name + "/")
    return entries


def test_the_package_map_names_every_module_and_nothing_else():
    mapped = set()
    for line in alexnet_tf.__doc__.splitlines():
        match = re.match(r"^    ([\w/, ]+?)(?:   |$)", line)
        if match:
            mapped.update(part.strip() for part in match.group(1).split(","))
    assert mapped == package_entries(), (
        f"alexnet_tf/__init__.py's map lacks {sorted(package_entries() - mapped)} and names "
        f"{sorted(mapped - package_entries())}, which do not exist")
    assert len(package_entries()) <= 16, "the top level is a map again: group new modules by stage"


@pytest.mark.parametrize("stage", ["data", "model", "train", "export", "evaluate", "demo", "convert"])
def test_each_stage_says_what_it_is_for(stage):
    module = __import__(f"alexnet_tf.{stage}", fromlist=["__doc__"])
    assert module.__doc__ and len(module.__doc__.split()) >= 8, f"alexnet_tf/{stage}/__init__.py"
