"""Dataset readers: each published layout written small with generated images, read back exactly."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_DATA, SHARED_DATA
from PIL import Image

from swinface.data import (
    FORMATS,
    Dataset,
    DatasetError,
    RecordIOError,
    RecordReader,
    UnsafePickleError,
    open_dataset,
    write_insightface_bin,
    write_recordio,
)
from swinface.data.recordio import IRHeader, pack, unpack
from swinface.errors import SwinFaceError
from swinface.tasks import CELEBA_ATTRIBUTES, EXPRESSION_LABELS, GENDER_LABELS
from swinface.vision import load_image

EXPR = {name: i for i, name in enumerate(EXPRESSION_LABELS)}
FEMALE, MALE = GENDER_LABELS.index("female"), GENDER_LABELS.index("male")


def encode(colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    """An 8x8 square of one colour, encoded (PNG by default: lossless, so pixels compare exactly)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format=fmt)
    return buf.getvalue()


def colour_of(data: bytes) -> tuple[int, ...]:
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((4, 4))


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(colour, "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"))
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_strict_and_lenient(
    fmt: str, path: Path, source: str, words: str, good: int, *, pairs: bool = False
) -> None:
    """Strict: one error naming `source` (file:line) and `words`; lenient: that line skipped."""
    with pytest.raises(DatasetError) as caught:
        open_dataset(fmt, path)
    message = str(caught.value)
    assert source in message and words in message, message
    assert isinstance(caught.value, SwinFaceError) and isinstance(caught.value, ValueError)
    dataset = open_dataset(fmt, path, strict=False)
    assert [s.source for s in dataset.skipped] == [source]
    assert words in dataset.skipped[0].problem
    assert len(dataset.pairs if pairs else dataset.samples) == good


def test_registry_lists_every_format() -> None:
    assert set(FORMATS) == {
        "insightface-bin",
        "lfw-pairs",
        "pairs-csv",
        "recordio",
        "identity-folders",
        "celeba",
        "rafdb",
        "fer2013-csv",
        "fer2013-folders",
        "utkface",
        "affectnet",
        "clap2015",
        "manifest",
    }
    with pytest.raises(ValueError, match="celeba.*utkface"):
        open_dataset("no-such-format", ".")


# ------------------------------------------------------------------ insightface .bin


def test_insightface_bin_round_trip(tmp_path: Path) -> None:
    colours = [((i * 10, 0, 0), (0, i * 10, 0)) for i in range(20)]
    images = [(encode(a), encode(b, "JPEG")) for a, b in colours]
    issame = [i % 3 == 0 for i in range(20)]
    path = write_insightface_bin(tmp_path / "lfw.bin", images, issame)
    dataset = open_dataset("insightface-bin", path)
    assert dataset.tasks == ("verification",) and not dataset.samples
    assert len(dataset.pairs) == 20
    for i, pair in enumerate(dataset.pairs):
        assert pair.image_a == images[i][0] and pair.image_b == images[i][1]
        assert pair.same is issame[i]
        assert pair.fold == i // 2  # 10 consecutive folds of 2
        assert pair.source == f"{path}#{i}"
    assert colour_of(dataset.pairs[3].image_a) == (30, 0, 0)


def test_insightface_bin_as_published_python2_style(tmp_path: Path) -> None:
    """Protocol 2 with issame as a numpy bool array, as the published files hold it."""
    bins = [encode((i, i, i)) for i in range(40)]
    issame = np.array([i < 10 for i in range(20)])
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(pickle.dumps((bins, issame), protocol=2))
    pairs = open_dataset("insightface-bin", path).pairs
    assert [p.same for p in pairs] == issame.tolist()
    assert [p.fold for p in pairs] == [i // 2 for i in range(20)]
    assert pairs[5].image_b == bins[11]


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))

    marker = ""


def test_restricted_unpickler_refuses_code_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "was-run"
    _RunsCode.marker = str(marker)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_RunsCode(), b"x"], [True])))
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle (os|posix)\.system"):
        open_dataset("insightface-bin", path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps((eval, [True])))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        open_dataset("insightface-bin", path)


def _hex_bomb(depth: int) -> bytes:
    """A pickle of `_codecs.encode(... _codecs.encode(b"ab", "hex") ..., "hex")`, `depth` deep.

    Each call doubles the string: at depth 40 this 600-byte file asks for two terabytes.
    """
    body = b"C\x02ab"  # SHORT_BINBYTES b"ab"
    for _ in range(depth):
        body = b"h\x00" + body + b"X\x03\x00\x00\x00hex\x86R"  # encode(inner, "hex")
    # PROTO 2; GLOBAL _codecs.encode into memo 0; ([bomb], [True])
    return b"\x80\x02c_codecs\nencode\nq\x000]" + body + b"a]\x88a\x86."


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (_hex_bomb(24), "codec 'hex'"),
        # bytes(2**62): an integer asks for that many zero bytes
        (
            b"\x80\x02c__builtin__\nbytes\n\x8a\x08" + (2**62).to_bytes(8, "little") + b"\x85R.",
            "integer",
        ),
        # a 20-byte file declaring a 2**60-byte string (BINBYTES8)
        (b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"ab.", "bytes8, but only"),
        # an object array: numpy's own unpickling trusts its state
        (pickle.dumps((np.array([b"a", 1], dtype=object), [True]), protocol=2), "not a plain"),
        # numpy's _reconstruct asked for a large array directly
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            b"\x8a\x05\x00\x00\x00\x00\x01\x85C\x01b\x87R.",
            "_reconstruct is only allowed",
        ),
    ],
    ids=["hex-doubling", "bytes-of-int", "declared-length", "object-array", "reconstruct-shape"],
)
def test_restricted_unpickler_refuses_memory_bombs(
    tmp_path: Path, payload: bytes, words: str
) -> None:
    import tracemalloc

    path = tmp_path / "bomb.bin"
    path.write_bytes(payload)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        with pytest.raises(DatasetError, match=str(path)) as info:
            open_dataset("insightface-bin", path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    assert words in str(info.value)
    assert peak < 1_000_000  # refused before anything large was built


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_insightface_bin_every_protocol_and_numpy_payloads(tmp_path: Path, protocol: int) -> None:
    """Re-packs store images as uint8 arrays or bytearrays, and issame as a bool array."""
    images = [encode((i, 2 * i, 3 * i)) for i in range(6)]
    bins = [
        np.frombuffer(images[0], np.uint8),
        bytearray(images[1]),
        images[2],
        np.frombuffer(images[3], np.uint8),
        images[4],
        images[5],
    ]
    issame = np.array([True, False, True])
    path = tmp_path / "repack.bin"
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    pairs = open_dataset("insightface-bin", path).pairs
    assert [(p.image_a, p.image_b) for p in pairs] == [tuple(images[i : i + 2]) for i in (0, 2, 4)]
    assert [p.same for p in pairs] == [True, False, True]
    path.write_bytes(pickle.dumps((bins, [b"" == b"", 0, np.bool_(True)]), protocol=protocol))
    assert [p.same for p in open_dataset("insightface-bin", path).pairs] == [True, False, True]


def test_insightface_bin_issame_must_be_flat(tmp_path: Path) -> None:
    # Nested lists sharing one inner list: np.asarray would expand them into a huge array.
    inner = [True] * 10
    path = tmp_path / "nested.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b"], [[inner] * 10]), protocol=2))
    with pytest.raises(DatasetError, match="flat list"):
        open_dataset("insightface-bin", path)


def test_insightface_bin_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(DatasetError, match="two images per pair"):
        open_dataset("insightface-bin", path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=str(path)):
        open_dataset("insightface-bin", path)


# ------------------------------------------------------------------ LFW pairs.txt


def _lfw(tmp_path: Path, lines: list[str]) -> Path:
    for name, count in (("Ann_Lee", 3), ("Bob", 2), ("Cy_D", 1)):
        for i in range(1, count + 1):
            write_image(tmp_path / "lfw" / name / f"{name}_{i:04d}.jpg")
    write_text(tmp_path / "pairs.txt", "\n".join(["2\t1", *lines]) + "\n")
    return tmp_path


def test_lfw_pairs(tmp_path: Path) -> None:
    root = _lfw(tmp_path, ["Ann_Lee\t1\t2", "Ann_Lee\t3\tBob\t1", "Bob 1 2", "Bob 2 Cy_D 1"])
    dataset = open_dataset("lfw-pairs", root)
    lfw = root / "lfw"
    expected = [
        (lfw / "Ann_Lee/Ann_Lee_0001.jpg", lfw / "Ann_Lee/Ann_Lee_0002.jpg", True, 0, 2),
        (lfw / "Ann_Lee/Ann_Lee_0003.jpg", lfw / "Bob/Bob_0001.jpg", False, 0, 3),
        (lfw / "Bob/Bob_0001.jpg", lfw / "Bob/Bob_0002.jpg", True, 1, 4),
        (lfw / "Bob/Bob_0002.jpg", lfw / "Cy_D/Cy_D_0001.jpg", False, 1, 5),
    ]
    got = [(p.image_a, p.image_b, p.same, p.fold, p.source) for p in dataset.pairs]
    assert got == [(a, b, s, f, f"{root / 'pairs.txt'}:{n}") for a, b, s, f, n in expected]
    assert open_dataset("lfw-pairs", root / "pairs.txt").pairs == dataset.pairs


def test_lfw_pairs_malformed(tmp_path: Path) -> None:
    root = _lfw(tmp_path, ["Ann_Lee 1 2", "Ann_Lee 1 Bob 9", "Bob 1 2", "Bob 2 Cy_D 1"])
    source = f"{root / 'pairs.txt'}:3"
    assert_strict_and_lenient(
        "lfw-pairs", root, source, "Bob_0009.jpg does not exist", 3, pairs=True
    )
    write_text(root / "pairs.txt", "2 1\nAnn_Lee 1 2\nAnn_Lee 1\nBob 1 2\nBob 2 Cy_D 1\n")
    assert_strict_and_lenient("lfw-pairs", root, source, "got 2 field(s)", 3, pairs=True)


# ------------------------------------------------------------------ pairs CSV


def test_pairs_csv(tmp_path: Path) -> None:
    a, b = write_image(tmp_path / "img" / "a.png"), write_image(tmp_path / "img" / "b.png")
    csv_path = write_text(
        tmp_path / "pairs.csv",
        "path_a,path_b,same\nimg/a.png,img/b.png,1\nimg/b.png,img/a.png,False\n",
    )
    pairs = open_dataset("pairs-csv", csv_path).pairs
    assert [(p.image_a, p.image_b, p.same, p.fold, p.source) for p in pairs] == [
        (a, b, True, None, f"{csv_path}:2"),
        (b, a, False, None, f"{csv_path}:3"),
    ]
    write_text(csv_path, "path_a,path_b,same\nimg/a.png,img/b.png,maybe\nimg/a.png,img/b.png,0\n")
    assert_strict_and_lenient("pairs-csv", csv_path, f"{csv_path}:2", "'maybe'", 1, pairs=True)
    write_text(csv_path, "path_a,path_b,same\nimg/a.png,img/c.png,1\nimg/a.png,img/b.png,0\n")
    assert_strict_and_lenient(
        "pairs-csv", csv_path, f"{csv_path}:2", "does not exist", 1, pairs=True
    )


# ------------------------------------------------------------------ RecordIO


def test_recordio_writer_and_reader_insightface_layout(tmp_path: Path) -> None:
    images = [encode((i * 40, 10, 10), "JPEG") for i in range(5)]
    identities = [0, 0, 1, 2, 2]
    records: list[tuple[int, bytes]] = [(0, pack(IRHeader(2, np.array([6.0, 9.0]), 0, 0), b""))]
    records += [
        (k + 1, pack(IRHeader(0, float(ident), k + 1, 0), img))
        for k, (img, ident) in enumerate(zip(images, identities, strict=True))
    ]
    # identity records after the images, as MS1MV2 has them: (start, end) image ranges
    records += [(6, pack(IRHeader(2, np.array([1.0, 3.0]), 6, 0), b""))]
    records += [(7, pack(IRHeader(2, np.array([3.0, 4.0]), 7, 0), b""))]
    records += [(8, pack(IRHeader(2, np.array([4.0, 6.0]), 8, 0), b""))]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, records)
    dataset = open_dataset("recordio", tmp_path)
    assert dataset.tasks == ("identity",)
    assert [s.identity for s in dataset.samples] == identities
    assert [s.image.encoded_bytes() for s in dataset.samples] == images
    assert np.array_equal(load_image(dataset.samples[0].image), load_image(images[0]))
    assert [s.source for s in dataset.samples] == [f"{rec}#{k}" for k in range(1, 6)]
    assert open_dataset("recordio", rec).samples == dataset.samples


def test_recordio_hand_built_bytes(tmp_path: Path) -> None:
    """A pack written byte by byte from the format description, not by our writer."""
    magic = struct.pack("<I", 0xCED7230A)
    images = [encode((0, 0, 200)), encode((0, 200, 0)) + b"\x01"]  # the second needs padding
    blob, index = b"", []
    # an image record with a vector label (flag 2: label[0] is the identity)
    payloads = [
        struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 7.0, 1.0) + images[0],
        struct.pack("<IfQQ", 0, 3.0, 1, 0) + images[1],
    ]
    for key, payload in enumerate(payloads):
        index.append(f"{key}\t{len(blob)}\n")
        blob += magic + struct.pack("<I", len(payload)) + payload + b"\0" * (-len(payload) % 4)
    # a third record split in two parts because its data holds the magic at a 4-byte boundary
    third = struct.pack("<IfQQ", 0, 5.0, 2, 0) + b"abcd" + magic + b"tail!"
    first, second = third[:28], third[32:]
    index.append(f"2\t{len(blob)}\n")
    blob += magic + struct.pack("<I", 1 << 29 | len(first)) + first
    blob += magic + struct.pack("<I", 3 << 29 | len(second)) + second + b"\0" * 3
    (tmp_path / "plain.rec").write_bytes(blob)
    write_text(tmp_path / "plain.idx", "".join(index))
    samples = open_dataset("recordio", tmp_path / "plain.rec").samples
    assert [s.identity for s in samples] == [7, 3, 5]
    got = [s.image.encoded_bytes() for s in samples]  # read from the pack when needed
    assert got[0] == images[0] and got[1] == images[1]
    assert got[2] == b"abcd" + magic + b"tail!"
    # our writer produces the same bytes, and reads the same without the .idx
    write_recordio(tmp_path / "ours.rec", tmp_path / "ours.idx", [*payloads, third])
    assert (tmp_path / "ours.rec").read_bytes() == blob
    assert (tmp_path / "ours.idx").read_text() == "".join(index)
    (tmp_path / "ours.idx").unlink()
    assert [s.image for s in open_dataset("recordio", tmp_path / "ours.rec").samples] == got


def test_recordio_pack_and_errors(tmp_path: Path) -> None:
    header, payload = unpack(pack(IRHeader(0, 12.0, 3, 4), b"jpeg"))
    assert (header.flag, header.label, header.id, header.id2, payload) == (0, 12.0, 3, 4, b"jpeg")
    header, payload = unpack(pack(IRHeader(0, [1.5, 2.0], 0, 0), b"x"))
    assert header.flag == 2 and header.label.tolist() == [1.5, 2.0] and payload == b"x"
    rec, idx = tmp_path / "bad.rec", tmp_path / "bad.idx"
    write_recordio(
        rec, idx, [pack(IRHeader(0, 1.0, 0, 0), b"img"), pack(IRHeader(0, 2.5, 1, 0), b"i")]
    )
    write_text(idx, "0\t0\n1\t36\n2\t8\n")  # key 2 points into the middle of a record
    with RecordReader(rec, idx) as reader:
        assert unpack(reader.read_key(0))[1] == b"img"
        with pytest.raises(RecordIOError, match="bad magic"):
            reader.read_key(2)
    dataset = open_dataset("recordio", rec, strict=False)
    assert [s.identity for s in dataset.samples] == [1]
    assert [e.source for e in dataset.skipped] == [f"{rec}#1", f"{rec}#2"]
    assert "2.5 is not a non-negative integer" in dataset.skipped[0].problem
    with pytest.raises(DatasetError, match=f"{rec}#1"):
        open_dataset("recordio", rec)


# ------------------------------------------------------------------ identity folders


def test_identity_folders(tmp_path: Path) -> None:
    files = [
        write_image(tmp_path / "zoe" / "1.jpg"),
        write_image(tmp_path / "adam" / "b.png"),
        write_image(tmp_path / "adam" / "a.jpg"),
    ]
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an identity")
    samples = open_dataset("identity-folders", tmp_path).samples
    assert [(s.image, s.identity, s.groups) for s in samples] == [
        (files[2], 0, {"name": "adam"}),
        (files[1], 0, {"name": "adam"}),
        (files[0], 1, {"name": "zoe"}),
    ]


# ------------------------------------------------------------------ CelebA


def _celeba_row(name: str, ones: set[str]) -> str:
    # CelebA pads single-digit values with two spaces: keep that quirk
    return name + "".join("  1" if a in ones else " -1" for a in CELEBA_ATTRIBUTES)


def _celeba(tmp_path: Path, rows: list[str], count: int | None = None) -> Path:
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        write_image(tmp_path / "img_align_celeba" / name)
    header = " ".join(CELEBA_ATTRIBUTES) + " \n"
    text = f"{len(rows) if count is None else count}\n{header}" + "\n".join(rows) + "\n"
    write_text(tmp_path / "list_attr_celeba.txt", text)
    write_text(tmp_path / "identity_CelebA.txt", "000001.jpg 10\n000002.jpg 10\n000003.jpg 4\n")
    write_text(tmp_path / "list_eval_partition.txt", "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    return tmp_path


def test_celeba(tmp_path: Path) -> None:
    rows = [
        _celeba_row("000001.jpg", {"Male", "Smiling", "5_o_Clock_Shadow"}),
        _celeba_row("000002.jpg", set()),
        _celeba_row("000003.jpg", {"Young", "Eyeglasses"}),
    ]
    root = _celeba(tmp_path, rows)
    dataset = open_dataset("celeba", root)
    assert dataset.tasks == ("attributes", "gender", "identity")
    attr_file = root / "list_attr_celeba.txt"
    got = [(s.image, s.source, s.identity, s.gender, s.split) for s in dataset.samples]
    assert got == [
        (root / "img_align_celeba" / "000001.jpg", f"{attr_file}:3", 10, MALE, "train"),
        (root / "img_align_celeba" / "000002.jpg", f"{attr_file}:4", 10, FEMALE, "val"),
        (root / "img_align_celeba" / "000003.jpg", f"{attr_file}:5", 4, FEMALE, "test"),
    ]
    first = dataset.samples[0].attributes
    assert first.dtype == np.int8 and first.shape == (40,)
    assert {CELEBA_ATTRIBUTES[i] for i in np.flatnonzero(first)} == {
        "Male",
        "Smiling",
        "5_o_Clock_Shadow",
    }
    assert not dataset.samples[1].attributes.any()
    assert [s.identity for s in open_dataset("celeba", root, split="test").samples] == [4]


def test_celeba_malformed(tmp_path: Path) -> None:
    good = _celeba_row("000001.jpg", {"Male"})
    root = _celeba(tmp_path, [good, "000002.jpg 1 -1 1", _celeba_row("000003.jpg", set())])
    attr_file = root / "list_attr_celeba.txt"
    assert_strict_and_lenient("celeba", root, f"{attr_file}:4", "got 4 field(s)", 2)
    root = _celeba(tmp_path, [good, _celeba_row("000009.jpg", set())])
    assert_strict_and_lenient("celeba", root, f"{attr_file}:4", "000009.jpg does not exist", 1)
    root = _celeba(tmp_path, [good, _celeba_row("000002.jpg", set()).replace("-1", "2", 1)])
    assert_strict_and_lenient("celeba", root, f"{attr_file}:4", "'2' is not 1 or -1", 1)
    root = _celeba(tmp_path, [good], count=5)
    assert_strict_and_lenient("celeba", root, f"{attr_file}:1", "row count (1)", 1)
    write_text(attr_file, "1\nMale Smiling\n" + good + "\n")
    with pytest.raises(DatasetError, match="40 attribute names"):
        open_dataset("celeba", root, strict=False)


# ------------------------------------------------------------------ RAF-DB


def test_rafdb_maps_labels_by_name(tmp_path: Path) -> None:
    raf_names = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    lines = [f"train_{k:05d}.jpg {k}" for k in range(1, 8)] + ["test_0001.jpg 7"]
    write_text(tmp_path / "EmoLabel" / "list_patition_label.txt", "\n".join(lines) + "\n")
    for line in lines:
        stem = line.split(".")[0]
        write_image(tmp_path / "Image" / "aligned" / f"{stem}_aligned.jpg")
    dataset = open_dataset("rafdb", tmp_path)
    assert [EXPRESSION_LABELS[s.expression] for s in dataset.samples] == [*raf_names, "neutral"]
    assert [s.split for s in dataset.samples] == ["train"] * 7 + ["test"]
    assert dataset.samples[0].image == tmp_path / "Image" / "aligned" / "train_00001_aligned.jpg"
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    assert dataset.samples[7].source == f"{label_file}:8"
    assert len(open_dataset("rafdb", label_file, split="test").samples) == 1

    write_text(label_file, "train_00001.jpg 1\ntrain_00002.jpg 8\ntrain_00003.jpg 3\n")
    assert_strict_and_lenient("rafdb", tmp_path, f"{label_file}:2", "outside 1..7", 2)
    write_text(label_file, "train_00001.jpg 1\ntrain_00002.jpg\ntrain_00003.jpg 3\n")
    assert_strict_and_lenient("rafdb", tmp_path, f"{label_file}:2", "got 1 field(s)", 2)


def test_rafdb_original_images(tmp_path: Path) -> None:
    write_text(tmp_path / "list_patition_label.txt", "test_0002.jpg 4\n")
    image = write_image(tmp_path / "Image" / "original" / "test_0002.jpg")
    (sample,) = open_dataset("rafdb", tmp_path).samples
    assert sample.image == image and sample.expression == EXPR["happiness"]


# ------------------------------------------------------------------ FER2013


def _fer_pixels(value: int) -> str:
    return " ".join(str((value + i) % 256) for i in range(48 * 48))


def test_fer2013_csv(tmp_path: Path) -> None:
    rows = [(0, 0, "Training"), (3, 100, "PublicTest"), (6, 7, "PrivateTest")]
    text = "emotion,pixels,Usage\n" + "".join(f"{e},{_fer_pixels(v)},{u}\n" for e, v, u in rows)
    csv_path = write_text(tmp_path / "fer2013.csv", text)
    dataset = open_dataset("fer2013-csv", tmp_path)
    assert [EXPRESSION_LABELS[s.expression] for s in dataset.samples] == [
        "anger",
        "happiness",
        "neutral",
    ]
    assert [s.split for s in dataset.samples] == ["train", "val", "test"]
    image = dataset.samples[1].image
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    expected = ((100 + np.arange(48 * 48)) % 256).astype(np.uint8).reshape(48, 48)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], expected)
    assert dataset.samples[2].source == f"{csv_path}:4"

    bad_pixels = _fer_pixels(0).replace(" 5 ", " x ", 1)
    write_text(
        csv_path, f"emotion,pixels,Usage\n1,{bad_pixels},Training\n2,{_fer_pixels(1)},Training\n"
    )
    assert_strict_and_lenient("fer2013-csv", csv_path, f"{csv_path}:2", "pixels", 1)
    write_text(
        csv_path,
        f"emotion,pixels,Usage\n1,{_fer_pixels(0)},Training\n7,{_fer_pixels(1)},Training\n",
    )
    assert_strict_and_lenient("fer2013-csv", csv_path, f"{csv_path}:3", "emotion 7 is outside", 1)


def test_fer2013_folders(tmp_path: Path) -> None:
    a = write_image(tmp_path / "train" / "Happy" / "Training_1.jpg")
    b = write_image(tmp_path / "train" / "angry" / "Training_2.jpg")
    c = write_image(tmp_path / "val" / "surprise" / "PublicTest_1.jpg")
    dataset = open_dataset("fer2013-folders", tmp_path)
    got = [(s.image, s.expression, s.split, s.source) for s in dataset.samples]
    assert got == [
        (a, EXPR["happiness"], "train", str(a)),
        (b, EXPR["anger"], "train", str(b)),
        (c, EXPR["surprise"], "val", str(c)),
    ]
    assert [s.image for s in open_dataset("fer2013-folders", tmp_path, split="val").samples] == [c]
    with pytest.raises(DatasetError, match="splits: train, val"):
        open_dataset("fer2013-folders", tmp_path, split="test")
    # flat layout
    flat = open_dataset("fer2013-folders", tmp_path / "train").samples
    assert [(s.image, s.split) for s in flat] == [(a, None), (b, None)]
    # an unknown class folder
    write_image(tmp_path / "train" / "contempt" / "Training_3.jpg")
    assert_strict_and_lenient(
        "fer2013-folders", tmp_path, str(tmp_path / "train" / "contempt"), "'contempt'", 3
    )


# ------------------------------------------------------------------ UTKFace


def test_utkface(tmp_path: Path) -> None:
    names = [
        "25_0_2_20170116174525125.jpg.chip.jpg",
        "3_1_4_20161219203650636.jpg.chip.jpg",
        "61_1_0_20170109142408075.jpg",
        "39_1_20170116174525125.jpg.chip.jpg",  # three such names in the full release: no race
    ]
    for name in names:
        write_image(tmp_path / "part1" / name)
    dataset = open_dataset("utkface", tmp_path)
    assert dataset.tasks == ("age", "gender")
    got = {s.image.name: (s.age, s.gender, s.groups) for s in dataset.samples}
    assert got == {
        names[0]: (25.0, MALE, {"race": "Asian", "gender": "male"}),
        names[1]: (3.0, FEMALE, {"race": "Others", "gender": "female"}),
        names[2]: (61.0, FEMALE, {"race": "White", "gender": "female"}),
        names[3]: (39.0, FEMALE, {"gender": "female"}),
    }


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("39_1_2.jpg", "got 3 field(s)"),  # a race without a date stamp
        ("39_20170116174525125.jpg", "got 2 field(s)"),
        ("x_1_0_20170116174525125.jpg", "age 'x' is not an integer"),
        ("40_3_0_20170116174525125.jpg", "gender 3 is outside 0..1"),
    ],
)
def test_utkface_malformed_names(tmp_path: Path, name: str, words: str) -> None:
    write_image(tmp_path / "1_0_0_20170116174525125.jpg.chip.jpg")
    bad = write_image(tmp_path / name)
    assert_strict_and_lenient("utkface", tmp_path, str(bad), words, 1)


# ------------------------------------------------------------------ AffectNet

_AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,"
    "facial_landmarks,expression,valence,arousal\n"
)


def test_affectnet(tmp_path: Path) -> None:
    rows = []
    for label in range(11):
        name = f"{label}/img{label}.jpg"
        write_image(tmp_path / "Manually_Annotated_Images" / name)
        rows.append(f'{name},10,10,80,80,"1.0;2.0;3.0",{label},0.5,-0.25\n')
    write_text(tmp_path / "training.csv", _AFFECTNET_HEADER + "".join(rows))
    write_text(tmp_path / "validation.csv", _AFFECTNET_HEADER + rows[1])
    dataset = open_dataset("affectnet", tmp_path)
    train = [s for s in dataset.samples if s.split == "train"]
    assert [EXPRESSION_LABELS[s.expression] for s in train] == [
        "neutral",
        "happiness",
        "sadness",
        "surprise",
        "fear",
        "disgust",
        "anger",
    ]
    assert train[2].image == tmp_path / "Manually_Annotated_Images" / "2" / "img2.jpg"
    assert train[2].source == f"{tmp_path / 'training.csv'}:4"
    assert dataset.excluded == {"contempt": 1, "none": 1, "uncertain": 1, "non-face": 1}
    assert not dataset.skipped
    (val,) = open_dataset("affectnet", tmp_path, split="val").samples
    assert val.expression == EXPR["happiness"]

    csv_path = write_text(
        tmp_path / "training.csv", _AFFECTNET_HEADER + rows[0] + "9/none.jpg,1,1,1,1,,3,0,0\n"
    )
    assert_strict_and_lenient("affectnet", csv_path, f"{csv_path}:3", "does not exist", 1)


# ------------------------------------------------------------------ ChaLearn LAP 2015


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("image,mean,stdv\n{a},24.5,3.25\n{b},61,5\n", ","),
        ("Image;Mean;Std\n{a};24.5;3.25\n{b};61;5\n", ";"),
        ("{a};24.5;3.25\n{b};61;5\n", ";"),  # no header line
    ],
)
def test_clap2015(tmp_path: Path, text: str, delimiter: str) -> None:
    a, b = write_image(tmp_path / "Train" / "image_1.jpg"), write_image(tmp_path / "image_2.jpg")
    csv_path = write_text(tmp_path / "Train.csv", text.format(a=a.name, b=b.name))
    dataset = open_dataset("clap2015", csv_path)
    assert [(s.image, s.age, s.age_std, s.split) for s in dataset.samples] == [
        (a, 24.5, 3.25, "train"),
        (b, 61.0, 5.0, "train"),
    ]
    first_row = 1 if text.startswith("{") else 2
    assert dataset.samples[0].source == f"{csv_path}:{first_row}"


def test_clap2015_malformed(tmp_path: Path) -> None:
    write_image(tmp_path / "image_1.jpg")
    csv_path = write_text(
        tmp_path / "Validation.csv", "image,mean,std\nimage_1.jpg,old,2\nimage_1.jpg,30,2\n"
    )
    assert_strict_and_lenient("clap2015", tmp_path, f"{csv_path}:2", "age 'old' is not a number", 1)
    write_text(csv_path, "image,mean,std\nimage_1.jpg,30,2\nimage_9.jpg,30,2\n")
    assert_strict_and_lenient("clap2015", tmp_path, f"{csv_path}:3", "'image_9.jpg' not found", 1)
    assert open_dataset("clap2015", tmp_path, strict=False).samples[0].split == "val"


# ------------------------------------------------------------------ manifest


def test_manifest_csv(tmp_path: Path) -> None:
    a, b = write_image(tmp_path / "faces" / "a.jpg"), write_image(tmp_path / "faces" / "b.jpg")
    attrs_a = ["1" if name in ("Male", "Young") else "-1" for name in CELEBA_ATTRIBUTES]
    header = "path,identity,age,age_std,gender,expression,group_camera,split," + ",".join(
        CELEBA_ATTRIBUTES
    )
    lines = [
        header,
        "faces/a.jpg,4,31.5,2,male,happy,phone,train," + ",".join(attrs_a),
        "faces/b.jpg,,,,0,sadness,,test," + ",".join([""] * 40),
    ]
    path = write_text(tmp_path / "manifest.csv", "\n".join(lines) + "\n")
    dataset = open_dataset("manifest", path)
    assert dataset.tasks == ("identity", "age", "age_std", "gender", "expression", "attributes")
    first, second = dataset.samples
    assert (first.image, first.identity, first.age, first.age_std, first.gender) == (
        a,
        4,
        31.5,
        2.0,
        MALE,
    )
    assert (first.expression, first.groups, first.split) == (
        EXPR["happiness"],
        {"camera": "phone"},
        "train",
    )
    assert {CELEBA_ATTRIBUTES[i] for i in np.flatnonzero(first.attributes)} == {"Male", "Young"}
    assert (second.image, second.identity, second.age, second.gender) == (b, None, None, FEMALE)
    assert (second.expression, second.attributes, second.groups) == (EXPR["sadness"], None, {})


def test_manifest_jsonl_and_errors(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png")
    records = [
        {"path": "a.png", "age": 40, "gender": "female", "group_race": "Asian"},
        {"path": "a.png", "age": "forty"},
        {"path": "a.png", "expression": "contempt"},
        {"path": "missing.png"},
        {"path": "a.png", "gender": 1, "identity": 2},
    ]
    path = write_text(tmp_path / "m.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DatasetError, match=f"{path}:2: age 'forty' is not a number"):
        open_dataset("manifest", path)
    dataset = open_dataset("manifest", path, strict=False)
    assert [(s.image, s.age, s.gender, s.identity, s.groups) for s in dataset.samples] == [
        (a, 40.0, FEMALE, None, {"race": "Asian"}),
        (a, None, MALE, 2, {}),
    ]
    assert [e.source for e in dataset.skipped] == [f"{path}:{n}" for n in (2, 3, 4)]
    assert "unknown expression 'contempt'" in dataset.skipped[1].problem
    assert "missing.png does not exist" in dataset.skipped[2].problem
    short = write_text(tmp_path / "short.csv", "path,age\na.png,3\na.png\n")
    assert_strict_and_lenient("manifest", short, f"{short}:3", "expected 2 columns", 1)


# ------------------------------------------------------------------ the shared real data

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NEEDS_DATA)


@needs_shared
def test_real_fer2013_folders() -> None:
    dataset = open_dataset("fer2013-folders", SHARED_DATA / "fer2013")
    assert len(dataset.samples) == 28709 + 3589 and not dataset.skipped
    assert sum(s.split == "val" for s in dataset.samples) == 3589
    by_file = {s.image.name: s for s in dataset.samples if s.split == "train"}
    assert by_file["Training_10118481.jpg"].expression == EXPR["anger"]
    counts = np.bincount([s.expression for s in dataset.samples if s.split == "train"], minlength=7)
    assert counts[EXPR["happiness"]] == 7215 and counts[EXPR["disgust"]] == 436


@needs_shared
def test_real_utkface() -> None:
    dataset = open_dataset("utkface", SHARED_DATA / "utkface")
    assert len(dataset.samples) + len(dataset.skipped) == 21331
    by_file = {s.image.name: s for s in dataset.samples}
    first = by_file["100_0_0_20170112213500903.jpg.chip.jpg"]
    assert (first.age, first.gender, first.groups["race"]) == (100.0, MALE, "White")
    other = by_file["100_1_2_20170105174847679.jpg.chip.jpg"]
    assert (other.gender, other.groups) == (FEMALE, {"race": "Asian", "gender": "female"})


@needs_shared
def test_real_celeba() -> None:
    dataset = open_dataset("celeba", SHARED_DATA / "celeba")
    assert len(dataset.samples) == 7719 and not dataset.skipped
    assert len({s.identity for s in dataset.samples}) == 4217
    first = dataset.samples[0]
    assert first.image.name == "000002.jpg" and first.identity == 2937
    ones = {"Bags_Under_Eyes", "Big_Nose", "Brown_Hair", "High_Cheekbones"}
    ones |= {"Mouth_Slightly_Open", "No_Beard", "Smiling", "Young"}
    assert {CELEBA_ATTRIBUTES[i] for i in np.flatnonzero(first.attributes)} == ones
    assert first.gender == FEMALE


def test_dataset_record(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "1.jpg")
    dataset = open_dataset("identity-folders", tmp_path)
    assert isinstance(dataset, Dataset) and len(dataset) == 1 and dataset.splits == []
    with pytest.raises(DatasetError, match="has no splits"):
        open_dataset("identity-folders", tmp_path, split="train")


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, swinface.data; print('torch' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
