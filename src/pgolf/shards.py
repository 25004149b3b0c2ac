"""Read and write token shards in the Parameter Golf binary format.

A shard is a 1024-byte header of 256 little-endian int32 values
(magic, version, token count, then zeros) followed by the tokens as
little-endian uint16. The training code of the challenge memory-maps these
files, so every reader here checks the header against the real file size:
a truncated or foreign file must fail loudly, with the file and the numbers
in a single line, instead of silently feeding garbage to a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pgolf.errors import UserError

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = 1024
TOKEN_LIMIT = 1 << 16  # ids are stored as uint16
MAX_SHARD_TOKENS = (1 << 31) - 1  # the count lives in an int32 header slot

StrPath = str | os.PathLike[str]


class ShardError(UserError):
    """A shard is missing, malformed or inconsistent; the message is one line naming the file."""


@contextlib.contextmanager
def atomic_writer(path: StrPath) -> Iterator[BinaryIO]:
    """Yield a binary file that appears under `path` only once fully written.

    Writing goes to a temporary file in the same directory (so the final
    rename stays on one filesystem), which is fsynced and then renamed over
    the target. A process killed mid-write leaves at most a stray hidden
    temporary file, never a partial file under the final name. The temporary
    file is opened normally (not with mkstemp) so the result gets the usual
    umask permissions rather than owner-only ones.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself, so a crash right after it cannot undo it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: StrPath, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def _checked_tokens(path: StrPath, tokens: np.ndarray | list[int]) -> np.ndarray:
    """Return the tokens as little-endian uint16, refusing anything that would not survive the cast."""
    array = np.asarray(tokens).reshape(-1)
    if array.size == 0 or array.dtype == np.dtype("<u2"):
        return np.ascontiguousarray(array, dtype="<u2")  # no copy for the encoder's own buffers
    if array.dtype.kind not in "iu":
        raise ShardError(f"{path}: tokens must be integers, got dtype {array.dtype}")
    if array.size > MAX_SHARD_TOKENS:
        raise ShardError(f"{path}: {array.size} tokens exceed the int32 header limit {MAX_SHARD_TOKENS}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= TOKEN_LIMIT:
        bad = low if low < 0 else high
        index = int(np.flatnonzero(array == bad)[0])
        raise ShardError(f"{path}: token {bad} at index {index} is outside [0, {TOKEN_LIMIT})")
    return np.ascontiguousarray(array, dtype="<u2")


def _header(num_tokens: int) -> bytes:
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, num_tokens
    return header.tobytes()


def write_shard(path: StrPath, tokens: np.ndarray | list[int]) -> str:
    """Write one shard atomically after checking every token fits in uint16; return its sha256.

    The digest is taken from the bytes as they are written, so recording a
    shard in a manifest does not need a second read of a 200 MB file.
    """
    body = _checked_tokens(path, tokens)
    header = _header(body.size)
    digest = hashlib.sha256(header)
    digest.update(memoryview(body).cast("B"))
    with atomic_writer(path) as handle:
        handle.write(header)
        handle.write(memoryview(body).cast("B"))
    return digest.hexdigest()


class ShardStream:
    """Cut one split's token stream into numbered shards, written atomically and in order.

    Documents are appended as they are encoded and may straddle a shard
    boundary, exactly like the challenge's exporter does; only one shard's
    worth of tokens is ever held, so memory does not grow with the corpus.
    """

    def __init__(self, out_dir: StrPath, split: str, shard_tokens: int):
        if not 1 <= shard_tokens <= MAX_SHARD_TOKENS:
            raise ShardError(f"shard_tokens {shard_tokens} is outside [1, {MAX_SHARD_TOKENS}]")
        self.out_dir, self.split, self.shard_tokens = Path(out_dir), split, shard_tokens
        self._buffer = np.empty(0, dtype=np.uint16)  # grown on first use: a tiny split never allocates a full shard
        self._fill = 0
        self.entries: list[dict] = []

    def add(self, tokens: np.ndarray) -> None:
        """Append tokens, writing every shard that fills up."""
        position = 0
        while position < len(tokens):
            if len(self._buffer) < self.shard_tokens:
                self._grow(self._fill + len(tokens) - position)
            take = min(self.shard_tokens - self._fill, len(tokens) - position)
            self._buffer[self._fill : self._fill + take] = tokens[position : position + take]
            self._fill += take
            position += take
            if self._fill == self.shard_tokens:
                self._flush()

    def close(self) -> list[dict]:
        """Write the last, partial shard and free the buffer; return one manifest entry per shard written."""
        self._flush()
        self._buffer = np.empty(0, dtype=np.uint16)
        return self.entries

    def _grow(self, needed: int) -> None:
        size = min(self.shard_tokens, max(needed, 2 * len(self._buffer), 1 << 16))
        grown = np.empty(size, dtype=np.uint16)
        grown[: self._fill] = self._buffer[: self._fill]
        self._buffer = grown

    def _flush(self) -> None:
        if self._fill == 0:
            return
        name = f"fineweb_{self.split}_{len(self.entries):06d}.bin"
        path = self.out_dir / name
        digest = write_shard(path, self._buffer[: self._fill])
        self.entries.append(
            {"path": name, "split": self.split, "bytes": path.stat().st_size, "sha256": digest, "num_tokens": self._fill}
        )
        self._fill = 0


def read_header(path: StrPath) -> int:
    """Return the shard's token count after checking magic, version and file size."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise ShardError(f"{path}: missing") from None
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: file shorter than the {HEADER_BYTES}-byte header ({size} bytes)")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    magic, version, num_tokens = (int(v) for v in header[:3])
    if magic != MAGIC:
        raise ShardError(f"{path}: bad magic {magic} (expected {MAGIC})")
    if version != VERSION:
        raise ShardError(f"{path}: unsupported version {version} (expected {VERSION})")
    expected = HEADER_BYTES + 2 * num_tokens
    if num_tokens < 0 or size != expected:
        raise ShardError(f"{path}: size {size} bytes but header says {num_tokens} tokens (expected {expected} bytes)")
    return num_tokens


def read_shard(path: StrPath) -> np.ndarray:
    """Return the shard's tokens as a uint16 array, validated by `read_header` first."""
    num_tokens = read_header(path)
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    return tokens.astype(np.uint16, copy=False)


def sha256_file(path: StrPath, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB shards do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
