"""Read TensorFlow V2 checkpoints (``model.ckpt.index`` + ``model.ckpt.data-*``) without TensorFlow.

Why this is hand-written: TensorFlow is a ~500 MB install only to read two files, and the one pure-Python
reader on PyPI (``tensorflow-checkpoint-reader``) is unmaintained and broken on NumPy 2. The format is small
and stable, so it is read here from its specification:

- ``.index`` is a table in LevelDB's SSTable format (LevelDB ``doc/table_format.md``; TensorFlow keeps a copy
  in ``core/lib/io/table*``): data blocks of prefix-compressed key/value entries followed by restart points,
  an index block of block handles, and a 48-byte footer holding the index handle and a magic number. Every
  block is followed by a compression byte and a CRC; TensorFlow writes bundles uncompressed.
- Keys are tensor names in sorted order; each value is a serialized ``BundleEntryProto`` (``core/protobuf/
  tensor_bundle.proto``: dtype, shape, shard, offset, size, crc32c, slices). The empty key holds the
  ``BundleHeaderProto`` (number of shards, endianness, format version).
- The tensor bytes sit in ``.data-NNNNN-of-MMMMM`` at the entry's offset, in the byte order of the header.

The three protobuf messages are parsed from the wire format directly (varints and length-delimited fields):
generated ``_pb2`` modules would mean shipping TensorFlow's ``.proto`` files and pinning a protoc runtime
for about forty lines of parsing. The CRC32C checksums are not verified (no well-kept CRC32C library is a
dependency and Python's ``zlib`` has only CRC-32); instead every block and tensor is bounds-checked and every
tensor's byte size is checked against its dtype and shape, so a truncated or mangled file fails loudly.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB's (and TensorFlow's) table magic number, the footer's last 8 bytes
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the magic number
_BLOCK_TRAILER = 5  # compression type (1 byte) + masked crc32c (4 bytes)
_NO_COMPRESSION = 0
_BUNDLE_VERSION = 1  # TensorFlow's kTensorBundleVersion; readers refuse files whose min_consumer is above it

# DataType enum values (tensorflow/core/framework/types.proto) that map onto a numpy dtype.
_NUMPY_DTYPES = {1: "f4", 2: "f8", 3: "i4", 4: "u1", 5: "i2", 6: "i1", 9: "i8", 10: "b1", 17: "u2", 19: "f2",
                 22: "u4", 23: "u8"}
_OTHER_DTYPES = {7: "string", 8: "complex64", 14: "bfloat16", 18: "complex128", 20: "resource", 21: "variant"}


class CheckpointFormatError(ValueError):
    """A TF checkpoint file is truncated, mangled or not a checkpoint at all."""


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives (the fields of ``BundleEntryProto`` this reader uses)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    num_slices: int

    @property
    def dtype_name(self) -> str:
        if self.dtype in _NUMPY_DTYPES:
            return np.dtype(_NUMPY_DTYPES[self.dtype]).name
        return _OTHER_DTYPES.get(self.dtype, f"DataType {self.dtype}")


# ---- protobuf wire format -----------------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("a varint runs past the end of its buffer")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError("a varint is longer than 10 bytes")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: varints and fixed ints as ints, length-delimited as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise CheckpointFormatError("a length-delimited field runs past the end of its message")
            yield number, buf[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise CheckpointFormatError("a fixed-width field runs past the end of its message")
            yield number, int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire} (field {number})")


def _shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated ``dim`` (2) of {``size`` (1), ``name`` (2)}; ``unknown_rank`` (3)."""
    dims = []
    for number, value in _fields(buf):
        if number == 2 and isinstance(value, bytes):
            size = 0
            for dim_number, dim_value in _fields(value):
                if dim_number == 1 and isinstance(dim_value, int):
                    size = _signed64(dim_value)
            dims.append(size)
        elif number == 3 and value:
            raise CheckpointFormatError("a tensor of unknown rank cannot be stored in a checkpoint")
    return tuple(dims)


def parse_entry(name: str, buf: bytes) -> BundleEntry:
    """Decode one ``BundleEntryProto`` (proto3: absent fields are zero)."""
    fields: dict[str, int] = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0}
    shape: tuple[int, ...] = ()
    slices = 0
    numbers = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size"}
    for number, value in _fields(buf):
        if number in numbers and isinstance(value, int):
            fields[numbers[number]] = _signed64(value)
        elif number == 2 and isinstance(value, bytes):
            shape = _shape(value)
        elif number == 7:
            slices += 1
    return BundleEntry(name=name, shape=shape, num_slices=slices, **fields)


def parse_header(buf: bytes) -> tuple[int, str, int]:
    """Decode ``BundleHeaderProto``: (num_shards, numpy byte order, min_consumer of its VersionDef)."""
    num_shards, big_endian, min_consumer = 0, False, 0
    for number, value in _fields(buf):
        if number == 1 and isinstance(value, int):
            num_shards = value
        elif number == 2 and isinstance(value, int):
            big_endian = value == 1
        elif number == 3 and isinstance(value, bytes):
            for version_number, version_value in _fields(value):
                if version_number == 2 and isinstance(version_value, int):
                    min_consumer = version_value
    return num_shards, ">" if big_endian else "<", min_consumer


# ---- the SSTable ------------------------------------------------------------------------------------------
def _block_handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _block(table: bytes, offset: int, size: int, origin: str) -> bytes:
    if offset + size + _BLOCK_TRAILER > len(table):
        raise CheckpointFormatError(f"{origin}: a block ends at byte {offset + size + _BLOCK_TRAILER} but the file "
                                    f"has {len(table)} bytes (truncated?)")
    compression = table[offset + size]
    if compression != _NO_COMPRESSION:
        raise CheckpointFormatError(f"{origin}: block compressed with type {compression}; TensorFlow writes "
                                    "checkpoint indexes uncompressed, so this file is damaged or not a V2 checkpoint")
    return table[offset:offset + size]


def _block_entries(block: bytes, origin: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of one block: each entry stores how much of the previous key it shares."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{origin}: a block of {len(block)} bytes has no restart array")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    if end < 0:
        raise CheckpointFormatError(f"{origin}: a block claims {num_restarts} restart points, more than it holds")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > end:
            raise CheckpointFormatError(f"{origin}: a table entry runs past its block")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_length]
        pos += value_length


def read_table(table: bytes, origin: str) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable held in memory, in key order."""
    if len(table) < _FOOTER_SIZE:
        raise CheckpointFormatError(f"{origin}: {len(table)} bytes is too short for a checkpoint index (truncated?)")
    footer = table[-_FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != _TABLE_MAGIC:
        raise CheckpointFormatError(f"{origin}: not a TF checkpoint index (its last 8 bytes are not the table magic "
                                    "number; the file is truncated or of another kind)")
    _, _, pos = _block_handle(footer, 0)  # the metaindex block: TF's bundles keep nothing in it
    index_offset, index_size, _ = _block_handle(footer, pos)
    for _, handle in _block_entries(_block(table, index_offset, index_size, origin), origin):
        offset, size, _ = _block_handle(handle, 0)
        yield from _block_entries(_block(table, offset, size, origin), origin)


# ---- the bundle -------------------------------------------------------------------------------------------
class TFCheckpoint:
    """One V2 checkpoint by prefix (``.../model.ckpt``): its tensor names and their values."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        index = Path(f"{self.prefix}.index")
        if not index.is_file():
            raise FileNotFoundError(f"{index} does not exist: a TF checkpoint prefix names <prefix>.index and "
                                    "<prefix>.data-00000-of-0000N")
        header: bytes | None = None
        self.entries: dict[str, BundleEntry] = {}
        for key, value in read_table(index.read_bytes(), str(index)):
            if key == b"":
                header = value
            elif not key.startswith(b"\x00"):  # keys of individual slices start with a zero byte
                name = key.decode("utf-8")
                self.entries[name] = parse_entry(name, value)
        if header is None:
            raise CheckpointFormatError(f"{index}: no bundle header (the entry with the empty key); not a V2 checkpoint")
        self.num_shards, self._byte_order, min_consumer = parse_header(header)
        if min_consumer > _BUNDLE_VERSION:
            raise CheckpointFormatError(f"{index}: written in bundle format version {min_consumer}, newer than the "
                                        f"{_BUNDLE_VERSION} this reader knows")
        if self.num_shards < 1:
            raise CheckpointFormatError(f"{index}: the header says the checkpoint has {self.num_shards} data shards")

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def read(self, name: str) -> np.ndarray:
        """One tensor as a writable numpy array in native byte order."""
        entry = self.entries[name]
        if entry.num_slices:
            raise ValueError(f"{self.prefix}: variable {name!r} is stored in {entry.num_slices} slices (a partitioned "
                             "variable); this reader reads whole tensors only: re-save it unpartitioned")
        if entry.dtype not in _NUMPY_DTYPES:
            raise ValueError(f"{self.prefix}: variable {name!r} has dtype {entry.dtype_name}; this reader reads "
                             f"numeric tensors ({', '.join(sorted({np.dtype(d).name for d in _NUMPY_DTYPES.values()}))})")
        if any(d < 0 for d in entry.shape):
            raise CheckpointFormatError(f"{self.prefix}: variable {name!r} has a negative dimension {entry.shape}")
        dtype = np.dtype(_NUMPY_DTYPES[entry.dtype]).newbyteorder(self._byte_order)
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected:
            raise CheckpointFormatError(f"{self.prefix}: variable {name!r} ({entry.dtype_name} {list(entry.shape)}) "
                                        f"should take {expected} bytes but its entry says {entry.size}")
        if not 0 <= entry.shard_id < self.num_shards:
            raise CheckpointFormatError(f"{self.prefix}: variable {name!r} is in shard {entry.shard_id} of "
                                        f"{self.num_shards}")
        shard = self.shard_path(entry.shard_id)
        if not shard.is_file():
            raise FileNotFoundError(f"{shard} does not exist: the checkpoint's data shard {entry.shard_id} of "
                                    f"{self.num_shards} is missing next to {self.prefix}.index")
        buffer = bytearray(entry.size)
        with open(shard, "rb") as f:
            f.seek(entry.offset)
            got = f.readinto(buffer)
        if got != entry.size:
            raise CheckpointFormatError(f"{shard}: variable {name!r} needs bytes {entry.offset}..{entry.offset + entry.size}"
                                        f" but the file has {shard.stat().st_size} bytes (truncated)")
        return np.frombuffer(buffer, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=False)
