"""Seeded fuzzing of everything that reads user files: only `InputError` may escape, never a crash.

Random bytes, truncated and bit-flipped valid files, and valid files of unexpected shapes, modes and
types are thrown at the layout readers, the folder dataset and the checkpoint loader (about 150
cases, a few seconds). A failure lists every input that escaped with another exception type.
"""

import io
import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from sa4depth.config import config_to_dict, load_config
from sa4depth.data import layout
from sa4depth.data.folder import FolderDataset
from sa4depth.data.toy import toy_world
from sa4depth.errors import InputError
from sa4depth.train.run import load_checkpoint

SEED = 20240611
TOKENS = ["0", "1", "-3.5", "1e-9", "1e999", "nan", "inf", "-inf", "abc", "1,5", "²", "١٢", "0x10", "", "  "]


def random_bytes(rng, max_len=3000) -> bytes:
    return rng.integers(0, 256, int(rng.integers(0, max_len))).astype(np.uint8).tobytes()


def flip_bytes(data: bytes, rng, count=8) -> bytes:
    buf = bytearray(data)
    for i in rng.integers(0, len(buf), count):
        buf[i] = int(rng.integers(0, 256))
    return bytes(buf)


def truncate(data: bytes, rng) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def random_text(rng, max_lines=6) -> bytes:
    lines = [
        " ".join(str(rng.choice(TOKENS)) for _ in range(int(rng.integers(0, 14))))
        for _ in range(int(rng.integers(0, max_lines)))
    ]
    data = "\n".join(lines).encode()
    return data + random_bytes(rng, 8) if rng.random() < 0.2 else data  # sometimes invalid UTF-8


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` RGB pixels, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def random_image_file(rng) -> tuple[bytes, str]:
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    kind = str(rng.choice(["L", "LA", "P", "RGB", "RGBA", "I;16", "1", "F", "jpeg-cmyk", "bomb"]))
    if kind == "bomb":
        return png_header_only(30000, 30000), ".png"
    if kind == "jpeg-cmyk":
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="CMYK").save(buf, format="JPEG")
        return buf.getvalue(), ".jpg"
    if kind in ("RGB", "RGBA", "LA"):
        array = rng.integers(0, 256, (h, w, len(kind)), dtype=np.uint8)
        return png_bytes(array), ".png"
    if kind == "I;16":
        return png_bytes(rng.integers(0, 65535, (h, w), dtype=np.uint16)), ".png"
    if kind == "F":
        buf = io.BytesIO()
        Image.fromarray(rng.random((h, w)).astype(np.float32)).save(buf, format="TIFF")
        return buf.getvalue(), ".png"  # a TIFF named .png
    image = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert(kind)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), ".png"


def random_array(rng) -> np.ndarray:
    shape = tuple(int(s) for s in rng.integers(0, 5, int(rng.integers(0, 4))))
    dtype = rng.choice(
        ["float32", "float64", "float16", "int64", "uint8", "bool", "complex64", "U3", "datetime64[s]"]
    )
    if dtype == "U3":
        return np.full(shape, "1.5" if rng.random() < 0.5 else "abc")
    return np.zeros(shape, dtype=dtype) + (1 if dtype != "bool" and dtype != "datetime64[s]" else 0)


def random_depth_file(rng) -> tuple[bytes, str]:
    buf = io.BytesIO()
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return random_bytes(rng), str(rng.choice([".npz", ".npy"]))
    if kind == 1:
        np.save(buf, random_array(rng))
        return buf.getvalue(), ".npy"
    if kind == 2:
        np.save(buf, np.array([{"depth": 1}], dtype=object), allow_pickle=True)
        return buf.getvalue(), ".npy"
    if kind == 3:
        key = str(rng.choice(["depth", "Depth", "arr_0"]))
        np.savez(buf, **{key: random_array(rng)})
        return buf.getvalue(), ".npz"
    np.savez_compressed(buf, depth=rng.random((6, 9)).astype(np.float32))
    return (truncate if rng.random() < 0.5 else flip_bytes)(buf.getvalue(), rng), ".npz"


def expect_only_input_errors(cases, call):
    """Run ``call(case)`` for every case; return the descriptions of those that raised anything else."""
    escaped = []
    for description, case in cases:
        try:
            call(case)
        except InputError as e:
            assert "\n" not in str(e), f"{description}: multi-line message {e!s:.200}"
        except Exception as e:  # what the test is looking for
            escaped.append(f"{description}: {e.__class__.__name__}: {str(e)[:120]}")
    return escaped


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)


def test_file_readers_raise_only_input_errors(tmp_path, rng):
    cases = []
    valid_png = png_bytes(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    for i in range(40):
        kind = i % 4
        if kind == 0:
            data, suffix = random_bytes(rng), ".png"
        elif kind == 1:
            data, suffix = truncate(valid_png, rng), ".png"
        elif kind == 2:
            data, suffix = flip_bytes(valid_png, rng), ".png"
        else:
            data, suffix = random_image_file(rng)
        cases.append((f"image {i} (kind {kind})", ("image", data, suffix)))
    for i in range(20):
        cases.append((f"cam {i}", ("cam", random_text(rng, 4), ".txt")))
        cases.append((f"poses {i}", ("poses", random_text(rng), ".txt")))
        cases.append((f"split {i}", ("split", random_text(rng), ".txt")))
    for i in range(20):
        cases.append((f"depth {i}", ("depth", *random_depth_file(rng))))

    # Known corner cases, beside the random ones.
    for text in ["a \u00b2\n", "a --5\n", "a 1 2\n", "\xff\xfe a 1\n"]:
        cases.append(
            (f"split {text!r}", ("split", text.encode("latin-1" if "\xff" in text else "utf-8"), ".txt"))
        )
    for array in [np.full((2, 2), "abc"), np.zeros((0, 5)), np.zeros((2, 2, 3))]:
        buf = io.BytesIO()
        np.save(buf, array)
        cases.append((f"depth {array.dtype} {array.shape}", ("depth", buf.getvalue(), ".npy")))
    cases.append(("image claiming 30000 x 30000 pixels", ("image", png_header_only(30000, 30000), ".png")))

    readers = {
        "image": layout.read_image,
        "cam": layout.read_cam,
        "poses": layout.read_poses,
        "split": layout.read_split,
        "depth": layout.read_depth,
    }

    def call(case):
        reader, data, suffix = case
        path = tmp_path / f"input{suffix}"
        path.write_bytes(data)
        out = readers[reader](path)
        if reader == "image":  # whatever the file's mode, a decoded image is H x W x 3 uint8
            assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8, out.shape
        if reader == "cam":
            assert out.shape == (3, 3) and np.isfinite(out).all()
        if reader == "poses":
            assert out.shape[1:] == (4, 4) and np.isfinite(out).all()
        if reader == "depth":
            assert out.ndim == 2 and out.dtype == np.float32 and np.isfinite(out).all()

    escaped = expect_only_input_errors(cases, call)
    assert escaped == [], "\n".join(escaped)


def mutate_world(root, rng) -> str:
    """Apply one random damage to a copy of the toy world; return what was done."""
    seq = root / "sequences" / str(rng.choice(["a", "b"]))
    targets = {
        "image": lambda: seq / "images" / f"00000{int(rng.integers(0, 4))}.png",
        "depth": lambda: seq / "depth" / f"00000{int(rng.integers(0, 4))}.npz",
        "cam": lambda: seq / "cam.txt",
        "poses": lambda: seq / "poses.txt",
        "split": lambda: root / "splits" / "train.txt",
    }
    what = str(rng.choice(list(targets)))
    path = targets[what]()
    how = str(rng.choice(["random", "truncate", "flip", "delete", "replace", "dir"]))
    if how == "random":
        path.write_bytes(random_bytes(rng))
    elif how == "truncate":
        path.write_bytes(truncate(path.read_bytes(), rng))
    elif how == "flip":
        path.write_bytes(flip_bytes(path.read_bytes(), rng))
    elif how == "delete":
        path.unlink()
    elif how == "dir":  # a folder where a file should be
        path.unlink()
        path.mkdir()
    elif what == "image":
        data, _ = random_image_file(rng)
        path.write_bytes(data)
    elif what == "depth":
        path.write_bytes(random_depth_file(rng)[0])
    else:
        path.write_bytes(random_text(rng))
    return f"{how} {path.relative_to(root)}"


def test_folder_dataset_raises_only_input_errors(tmp_path, rng):
    clean = toy_world(tmp_path / "clean", frames=4, size=(32, 64))
    cases = []
    for i in range(40):
        root = tmp_path / f"case{i}"
        shutil.copytree(clean, root)
        cases.append((f"case {i}: {mutate_world(root, rng)}", root))

    def call(root):
        dataset = FolderDataset(root, "train", 32, 64)
        for i in range(len(dataset)):
            sample = dataset[i]
            assert sample["images"].shape == (3, 3, 32, 64) and torch.isfinite(sample["images"]).all()
            assert torch.isfinite(sample["depth"]).all() and torch.isfinite(sample["T_src_tgt"]).all()

    escaped = expect_only_input_errors(cases, call)
    assert escaped == [], "\n".join(escaped)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_loader_raises_only_input_errors(tmp_path, rng):
    config = config_to_dict(load_config(None, []))
    small = {
        "sa4depth_config": config,
        "state_dict": {"model.depth_net.encoder.conv1.weight": torch.zeros(64, 3, 7, 7)},
    }
    buf = io.BytesIO()
    torch.save(small, buf)
    valid = buf.getvalue()
    objects = [
        [1, 2, 3],
        torch.zeros(3),
        {"state_dict": {}},
        {"sa4depth_config": "resnet18", "state_dict": {}},
        {"sa4depth_config": {"model": {"encoder": 5}}, "state_dict": {}},
        {"sa4depth_config": {"no_such_section": {}}, "state_dict": {}},
        {"sa4depth_config": {"model": {"encoder": "resnet7"}}, "state_dict": {}},
        {"sa4depth_config": config, "state_dict": [1, 2]},
        {"sa4depth_config": config, "state_dict": {"x": 1}},
        {"sa4depth_config": {**config, "model": "resnet18"}, "state_dict": {}},
        {"sa4depth_config": config, "state_dict": {k: 1 for k in small["state_dict"]}},
        small,
    ]
    cases = []
    for i, obj in enumerate(objects):
        buf = io.BytesIO()
        torch.save(obj, buf)
        cases.append((f"object {i}", buf.getvalue()))
    for i in range(10):
        cases.append((f"random bytes {i}", random_bytes(rng)))
        cases.append((f"truncated {i}", truncate(valid, rng)))
        cases.append((f"flipped {i}", flip_bytes(valid, rng, count=3)))

    def call(data):
        path = tmp_path / "model.ckpt"
        path.write_bytes(data)
        load_checkpoint(path)

    escaped = expect_only_input_errors(cases, call)
    assert escaped == [], "\n".join(escaped)
