"""--init_from and --train_layers: which weights a run starts from, and which it may change."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from alexnet_tf.model import alexnet as model
from alexnet_tf.train import finetune, resume_flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def small_paper_network(num_classes: int = 5) -> keras.Model:
    return model.build_alexnet(num_classes=num_classes, variant="paper", image_size=67,
                               initialization="he", weight_decay=2.5e-4)


@pytest.fixture(scope="module")
def saved_source(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("source") / "model.keras")
    keras.utils.set_random_seed(3)
    small_paper_network().save(path)
    return path


@pytest.mark.parametrize("train_layers, learning", [
    ("all", LAYERS), ("fc6-fc8", ("fc6", "fc7", "fc8")), ("fc8", ("fc8",))])
def test_frozen_layers_do_not_change_under_sgd_momentum_and_weight_decay(
        saved_source, train_layers, learning):
    source = finetune.read_source(saved_source)
    network = small_paper_network()
    frozen = finetune.start_from(network, source, train_layers)
    assert sorted(frozen) == sorted(set(LAYERS) - set(learning))
    network.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.normal(0, 60, (16, 67, 67, 3)).astype("float32")
    network.fit(images, np.arange(16) % 5, epochs=2, batch_size=8, verbose=0)
    for name in LAYERS:
        changed = any(not np.array_equal(before, after) for before, after in
                      zip(source.weights[name], network.get_layer(name).get_weights()))
        assert changed == (name in learning), (train_layers, name)


def test_a_different_num_classes_reinitialises_fc8_only(saved_source):
    source = finetune.read_source(saved_source)
    network = small_paper_network(num_classes=3)
    finetune.start_from(network, source, "all")
    for name in LAYERS[:-1]:
        for before, after in zip(source.weights[name], network.get_layer(name).get_weights()):
            np.testing.assert_array_equal(before, after)
    assert network.get_layer("fc8").get_weights()[0].shape == (4096, 3)


def test_the_source_decides_the_architecture(saved_source):
    source = finetune.read_source(saved_source)
    assert (source.variant, source.initialization, source.num_classes) == ("paper", "he", 5)
    chosen = finetune.architecture(source, variant="paper", variant_given=False,
                                   initialization="paper")
    assert chosen == dict(variant="paper", initialization="he", input_normalization=None,
                          lrn="paper")
    with pytest.raises(finetune.InitFromError, match="--variant=single"):
        finetune.architecture(source, variant="single", variant_given=True,
                              initialization="he")


def test_a_caffe_lrn_source_is_fine_tuned_through_caffe_lrn(tmp_path):
    path = str(tmp_path / "caffe_lrn.keras")
    model.build_alexnet(num_classes=5, image_size=67, initialization="caffe",
                        lrn="caffe").save(path)
    source = finetune.read_source(path)
    assert source.lrn == "caffe"
    chosen = finetune.architecture(source, variant="paper", variant_given=False,
                                   initialization="paper")
    assert chosen["lrn"] == "caffe"
    network = model.build_alexnet(num_classes=3, image_size=67, **chosen)
    assert network.get_layer("lrn2").get_config()["bias"] == 1.0
    with pytest.raises(finetune.InitFromError, match="--lrn=paper, but --init_from="):
        finetune.architecture(source, variant="paper", variant_given=False,
                              initialization="paper", lrn="paper", lrn_given=True)


def test_a_paper_model_of_another_image_size_is_refused_naming_fc6(saved_source):
    source = finetune.read_source(saved_source)
    network = model.build_alexnet(num_classes=5, variant="paper", image_size=99,
                                  initialization="he")
    with pytest.raises(finetune.InitFromError, match="fc6.*--image_size"):
        finetune.start_from(network, source, "all")


def test_a_missing_or_foreign_init_from_is_named(tmp_path):
    for path in (tmp_path / "nope.keras", tmp_path / "notes.txt"):
        if path.suffix == ".txt":
            path.write_text("not a model")
        with pytest.raises(finetune.InitFromError, match=f"--init_from={path}: not a .keras"):
            finetune.read_source(str(path))


@pytest.mark.parametrize("flags, named", [
    (["--init_from={source}", "--variant=single"], "--variant=single, but --init_from="),
    (["--train_layers=fc8"], "--train_layers needs --init_from"),
])
def test_bad_init_from_flags_give_one_line(saved_source, tmp_path, flags, named):
    command = [sys.executable, "-m", "alexnet_tf.train",
               f"--flagfile={os.path.join(REPO_ROOT, 'configs', 'smoke.cfg')}",
               "--use_synthetic_data", f"--model_dir={tmp_path / 'run'}", "--num_classes=5",
               *(flag.format(source=saved_source) for flag in flags)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if named in line], result.stderr[-2000:]


def test_a_resume_refuses_other_train_layers_or_lrn_and_ignores_another_init_from():
    found = {change.flag: change.outcome for change in resume_flags.changes(
        {"train_layers": "fc8", "init_from": "a.keras", "lrn": "paper"},
        {"train_layers": "all", "init_from": "b.keras", "lrn": "caffe"}, mid_epoch=False)}
    assert found == {"train_layers": resume_flags.REFUSED, "init_from": resume_flags.IGNORED,
                     "lrn": resume_flags.REFUSED}


def test_fine_tuning_scales_photos_as_the_source_was_trained(saved_source, tmp_path):
    """A source trained with --resize_side=76 is fine-tuned and served at 76 unless told."""
    import json
    import shutil

    from alexnet_tf.model import model_info

    assert finetune.resize_side_of(saved_source) is None  # no model_info.json: the paper's
    source = str(tmp_path / "source" / "model.keras")
    os.makedirs(os.path.dirname(source))
    shutil.copy(saved_source, source)
    info = model_info.make_info(
        variant="paper", image_size=67, minimum_image_size=67, num_classes=5, parameters=1,
        preprocessing=model_info.paper_preprocessing(67, resize_shorter_side=76))
    with open(model_info.path_beside(source), "w") as handle:
        json.dump(info, handle)
    assert finetune.resize_side_of(source) == 76
    run = tmp_path / "run"
    command = [sys.executable, "-m", "alexnet_tf.train",
               f"--flagfile={os.path.join(REPO_ROOT, 'configs', 'smoke.cfg')}",
               "--use_synthetic_data", f"--model_dir={run}", "--num_classes=5", "--epochs=1",
               "--steps_per_epoch=2", f"--init_from={source}", "--train_layers=fc8"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "images scaled to 76 on their shorter side" in result.stderr
    saved = model_info.read_info(str(run / "model.keras"))
    assert saved["preprocessing"]["resize_shorter_side"] == 76
