"""The byte-level decisions: store as is, repair into an RGB JPEG, or skip with a reason."""

import io

import numpy as np
import pytest
from PIL import Image

from alexnet_tf.convert import images
from tests import corpus


@pytest.fixture(scope="module")
def quirks():
    return {stem: (data, outcome, word) for stem, data, outcome, word in corpus.quirky_images(np.random.default_rng(3))}


def test_plain_rgb_jpeg_is_stored_byte_for_byte():
    data = corpus.good_jpeg(np.random.default_rng(0), 90, 70)
    prepared = images.prepare_image(data)
    assert prepared.jpeg_bytes is data
    assert (prepared.width, prepared.height, prepared.repair) == (90, 70, None)


@pytest.mark.parametrize("stem", ["cmyk", "png_named_jpeg", "gif_named_jpeg", "bmp_named_jpeg", "webp_named_jpeg",
                                  "grayscale", "rgba", "palette", "sixteen_bit"])
def test_quirks_become_rgb_jpegs(quirks, stem):
    data, outcome, word = quirks[stem]
    assert outcome == corpus.REPAIRED
    prepared = images.prepare_image(data)
    assert word in prepared.repair
    decoded = Image.open(io.BytesIO(prepared.jpeg_bytes))
    assert (decoded.format, decoded.mode) == ("JPEG", "RGB")
    assert decoded.size == (prepared.width, prepared.height) == (64, 48)


def test_sixteen_bit_keeps_its_range(quirks):
    """Pillow's plain conversion clips 16-bit values at 255 (a white image); ours scales them."""
    pixels = np.asarray(Image.open(io.BytesIO(images.prepare_image(quirks["sixteen_bit"][0]).jpeg_bytes)))
    assert pixels[0, 0].max() < 10 and pixels[-1, -1].min() > 245
    assert 100 < pixels.mean() < 155


def test_cmyk_colours_survive(quirks):
    """CMYK (20, 180, 40, 10) is RGB 255*(1-c)*(1-k) = (226, 72, 207), a magenta."""
    pixels = np.asarray(Image.open(io.BytesIO(images.prepare_image(quirks["cmyk"][0]).jpeg_bytes)), dtype=float)
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(axis=0), [226, 72, 207], atol=6)


def test_transparent_pixels_become_white():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buffer = io.BytesIO()
    clear.save(buffer, format="PNG")
    pixels = np.asarray(Image.open(io.BytesIO(images.prepare_image(buffer.getvalue()).jpeg_bytes)))
    assert pixels.min() >= 250


@pytest.mark.parametrize("stem", ["empty", "truncated", "not_an_image", "bomb"])
def test_broken_files_are_rejected_with_their_reason(quirks, stem):
    data, outcome, word = quirks[stem]
    assert outcome == corpus.SKIPPED
    with pytest.raises(images.BrokenImage, match=word):
        images.prepare_image(data)


def test_bomb_is_refused_from_its_header_without_decoding():
    # 40000 x 40000 x 1 byte would be 1.6 GB; the refusal must come before any allocation.
    with pytest.raises(images.BrokenImage, match="1,600,000,000 pixels"):
        images.prepare_image(corpus.png_bomb())


def test_pixel_limit_is_configurable():
    data = corpus.good_jpeg(np.random.default_rng(0), 100, 100)
    with pytest.raises(images.BrokenImage, match="max_pixels=9,999"):
        images.prepare_image(data, max_pixels=9999)
    assert images.prepare_image(data, max_pixels=10000).width == 100


def _full_decode_fails(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            image.load()
        return False
    except Exception:  # noqa: BLE001 - any failure of a full decode
        return True


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"subsampling": 0}, {"restart_marker_rows": 1}],
                         ids=["baseline", "progressive", "444", "restart_markers"])
def test_plain_jpeg_check_rejects_what_a_full_decode_rejects(options):
    """Plain JPEGs are checked at 1/8 scale (every coefficient still read): cut or damaged anywhere,
    a file is refused exactly when a full decode fails, and truncations for the same reason."""
    rng = np.random.default_rng(6)
    photo = np.asarray(corpus._photo(rng, 203, 157), dtype=np.int16)
    noisy = Image.fromarray(np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=90, **options)
    data = buffer.getvalue()
    assert images.prepare_image(data).jpeg_bytes is data
    cuts = sorted({3, 100, len(data) // 2, len(data) - 3, *rng.integers(4, len(data) - 2, 40).tolist()})
    damaged = [data[:cut] for cut in cuts]
    for position, value in zip(rng.integers(2, len(data), 120).tolist(), rng.integers(0, 256, 120).tolist()):
        damaged.append(data[:position] + bytes([value]) + data[position + 1 :])
    refused = 0
    for sample in damaged:
        try:
            images.prepare_image(sample)
            ours = False
        except images.BrokenImage as error:
            ours = True
            if len(sample) < len(data) - 2 and sample == data[: len(sample)]:
                assert "truncated" in str(error) or "undecodable" in str(error)
        assert ours == _full_decode_fails(sample)
        refused += ours
    assert refused >= len(cuts) - 2  # every cut before the end-of-image marker is refused
