"""The demo corpus: ImageNet's extracted layout, ImageNet's validation labelling, reproducible."""

import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from alexnet_tf import imagenet
from alexnet_tf.demo import corpus as demo_data

IMAGENETTE = {
    "n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257",
}


def _files(root):
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("raw"))
    summary = demo_data.generate_demo_corpus(
        root, images_per_class=3, validation_per_class=2, seed=4
    )
    return root, summary


def test_train_folders_use_the_imagenette_wnids_and_imagenet_file_names(corpus):
    root, summary = corpus
    train_dir = os.path.join(root, "train")
    assert set(os.listdir(train_dir)) == IMAGENETTE == set(summary["synsets"])
    for synset in IMAGENETTE:
        names = sorted(os.listdir(os.path.join(train_dir, synset)))
        assert names == [f"{synset}_{n}.JPEG" for n in range(3)]
        assert summary["train_images"][synset] == 3


def test_images_are_rgb_jpegs_of_varied_sizes(corpus):
    root, _ = corpus
    sizes = set()
    for relative_path in _files(root):
        with Image.open(os.path.join(root, relative_path)) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert all(180 <= side <= 320 for side in image.size)
            sizes.add(image.size)
    assert len(sizes) > 20  # 50 images, sizes drawn per image


def test_validation_is_flat_and_labelled_by_imagenet_ground_truth(corpus):
    root, summary = corpus
    val_dir = os.path.join(root, "val")
    names = sorted(os.listdir(val_dir))
    assert len(names) == 20
    assert all(re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", name) for name in names)
    truth = {name: imagenet.validation_synset_for(name) for name in names}
    assert sorted(truth.values()) == sorted(list(IMAGENETTE) * 2)
    for synset, listed in summary["validation_images"].items():
        assert all(truth[name] == synset for name in listed)


def test_each_validation_image_shows_its_ground_truth_class(corpus):
    root, _ = corpus
    for name in os.listdir(os.path.join(root, "val")):
        index = int(name[len("ILSVRC2012_val_"):-len(".JPEG")])
        class_index = demo_data.DEMO_SYNSETS.index(imagenet.validation_synset_for(name))
        rng = demo_data.image_rng(4, "val", class_index, index)
        expected = demo_data.draw_image(class_index, rng)
        with open(os.path.join(root, "val", name), "rb") as handle:
            assert handle.read() == expected, name


def test_validation_takes_the_first_indices_of_each_class_in_imagenet_order():
    chosen = demo_data.validation_indices(50)
    ground_truth = imagenet.validation_synsets()
    for synset, indices in chosen.items():
        assert len(indices) == 50  # ImageNet's share per class
        assert indices == [i for i, s in enumerate(ground_truth, start=1) if s == synset]


def test_same_seed_same_bytes_and_other_seeds_differ(tmp_path, corpus):
    root, _ = corpus
    again = demo_data.generate_demo_corpus(
        str(tmp_path / "again"), images_per_class=3, validation_per_class=2, seed=4
    )
    assert _files(os.path.dirname(again["train_dir"])) == _files(root)
    other = demo_data.generate_demo_corpus(
        str(tmp_path / "other"), images_per_class=3, validation_per_class=2, seed=5
    )
    other_files = _files(os.path.dirname(other["train_dir"]))
    assert other_files.keys() == _files(root).keys()
    assert all(other_files[name] != data for name, data in _files(root).items())


def test_a_smaller_corpus_is_a_prefix_of_a_larger_one(tmp_path, corpus):
    root, _ = corpus
    smaller = demo_data.generate_demo_corpus(
        str(tmp_path), images_per_class=1, validation_per_class=1, seed=4
    )
    larger = _files(root)
    for name, data in _files(os.path.dirname(smaller["train_dir"])).items():
        assert larger[name] == data


def test_too_many_validation_images_per_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="validation_per_class"):
        demo_data.generate_demo_corpus(str(tmp_path), images_per_class=1, validation_per_class=51)


def test_command_line_writes_the_corpus_and_says_so(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.demo.corpus", f"--output_dir={tmp_path}",
         "--images_per_class=1", "--validation_per_class=1"],
        capture_output=True, text=True, check=True,
    )
    assert "10 classes" in result.stdout and "golf ball" in result.stdout
    assert len(os.listdir(tmp_path / "val")) == 10


def test_command_line_rejects_a_bad_flag_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.demo.corpus", f"--output_dir={tmp_path}",
         "--validation_per_class=60"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "--validation_per_class must be in [0, 50]" in result.stderr
    assert "Traceback" not in result.stderr
