"""labels.txt: the class list that travels from the converter to the served model."""

import os

import pytest

from alexnet_tf import labels


def test_written_labels_read_back_in_order_with_any_names(tmp_path):
    names = ["zebra", "Äpfel", "my cats", "10", "chats été"]
    path = labels.write_labels(str(tmp_path / "labels.txt"), names)
    assert labels.read_labels(path) == names
    assert open(path, encoding="utf-8").read() == "".join(f"{n}\n" for n in names)
    assert os.listdir(tmp_path) == ["labels.txt"]  # no temporary left behind


def test_folder_order_is_code_point_order():
    assert labels.sorted_class_names(["b", "B", "a", "Ä", "10", "9"]) == ["10", "9", "B", "a", "b", "Ä"]
    with pytest.raises(labels.ClassListError, match="twice"):
        labels.sorted_class_names(["a", "a"])


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("cat\ndog\ncat\n", "'cat' twice"), ("\n\n", "empty")],
)
def test_bad_labels_files_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "labels.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(labels.ClassListError, match=message) as error:
        labels.read_labels(str(path))
    assert str(path) in str(error.value)


def test_unwritable_names_are_refused(tmp_path):
    for bad in ["", "two\nlines", " padded"]:
        with pytest.raises(labels.ClassListError):
            labels.write_labels(str(tmp_path / "labels.txt"), ["ok", bad])
    assert not (tmp_path / "labels.txt").exists()


def test_labels_are_found_beside_a_model_file_or_in_its_folder(tmp_path):
    assert labels.labels_beside(str(tmp_path / "model.keras")) is None
    labels.write_labels(str(tmp_path / "labels.txt"), ["a", "b"])
    assert labels.labels_beside(str(tmp_path / "model.keras")) == str(tmp_path / "labels.txt")
    assert labels.labels_beside(str(tmp_path)) == str(tmp_path / "labels.txt")


def test_imagenet_is_one_class_list_of_1000_synsets():
    names = labels.imagenet_labels()
    assert len(names) == 1000 and names[0] == "n01440764" and len(set(names)) == 1000
