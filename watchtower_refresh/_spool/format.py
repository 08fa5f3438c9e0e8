"""The bytes on disk: file headers, frames, the record codec, and reading frames back.

Segment, ack and index files start with a 12-byte header: ``WTRSPOOL``, format version
(u16), file kind (u16). Then frames: a 2-byte sync mark, the payload length (u32) and the
CRC-32 of the payload (u32), all little-endian, then the payload. A record's payload is its
id (u64), timestamp in milliseconds (i64), the stream name's length in bytes (u16), the
stream name and the message, both UTF-8 (lone surrogates kept with ``surrogatepass``). An
ack frame's payload is a run of u32 offsets from the segment's first id; an index frame's is
the first id (u64) of a segment the writer began. The tail file is not framed: its header,
4 bytes of padding, then the id (u64, little-endian) of the last record the writer appended,
overwritten in place (:data:`TAIL_SIZE` bytes in all).

Reading is bounded: :class:`Frames` holds at most about one frame of the format's maximum
size and a chunk in memory, checks a frame's claimed length against :data:`MAX_PAYLOAD` and
the bytes left in the file before it computes any CRC, and the checksums that fail may
cover at most four times the file plus one maximal frame, so that damage crafted to make
every byte look like the start of a long frame costs linear time, not quadratic.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

__all__ = [
    "ACKS_HEADER",
    "FILE_HEADER",
    "FORMAT_VERSION",
    "FRAME",
    "FRAME_SIZE",
    "INDEX_HEADER",
    "KIND_ACKS",
    "KIND_INDEX",
    "KIND_SEGMENT",
    "KIND_TAIL",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "MIN_RECORD_FRAME",
    "RECORD",
    "SEGMENT_HEADER",
    "SYNC",
    "TAIL_HEADER",
    "TAIL_OFFSET",
    "TAIL_SIZE",
    "Frames",
    "SpooledRecord",
    "crc32",
    "decode_record",
    "encode_acks",
    "encode_frame",
    "file_start",
]

FORMAT_VERSION = 1
# Larger than any event CloudWatch accepts (1 MB) with its stream name; a length above it
# in a frame header is damage, not a record.
MAX_PAYLOAD = 4 * 1024 * 1024

FILE_MAGIC = b"WTRSPOOL"
FILE_HEADER = struct.Struct("<8sHH")
KIND_SEGMENT = 1
KIND_ACKS = 2
KIND_INDEX = 3
KIND_TAIL = 4
SYNC = b"\xd7\x1c"
FRAME = struct.Struct("<2sII")
FRAME_SIZE = FRAME.size
MAX_FRAME = FRAME_SIZE + MAX_PAYLOAD
RECORD = struct.Struct("<QqH")
SEGMENT_HEADER = FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, KIND_SEGMENT)
ACKS_HEADER = FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, KIND_ACKS)
INDEX_HEADER = FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, KIND_INDEX)
TAIL_HEADER = FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, KIND_TAIL)
TAIL_OFFSET = 16  # the id, 8-byte aligned after the header: one store, never torn
TAIL_SIZE = TAIL_OFFSET + 8
# The smallest record frame (an empty stream name and message): what a segment of a given
# size may hold at the most.
MIN_RECORD_FRAME = FRAME_SIZE + RECORD.size
crc32 = zlib.crc32

_CHUNK = 256 * 1024


class SpooledRecord(NamedTuple):
    """One record read back from the spool (a named tuple: replay makes many of them).

    Attributes:
        id: The id ``append`` returned for it (unique within its owner).
        timestamp_ms: The record's timestamp, milliseconds since the epoch.
        stream: The log stream name it was meant for.
        message: The formatted message.
    """

    id: int
    timestamp_ms: int
    stream: str
    message: str


def encode_frame(payload: bytes) -> bytes:
    """One frame: sync mark, length, CRC-32, payload."""
    return FRAME.pack(SYNC, len(payload), crc32(payload)) + payload


def encode_acks(offsets: list[int]) -> bytes:
    """An ack frame for ``offsets`` (u32 each, from the segment's first id)."""
    return encode_frame(struct.pack(f"<{len(offsets)}I", *offsets))


def decode_record(payload: bytes) -> SpooledRecord:
    """A record's payload back as a record.

    Raises:
        struct.error: Too short for the record header.
        ValueError: The stream name runs past the payload, or the text is not UTF-8.
    """
    head = RECORD.size
    record_id, timestamp, length = RECORD.unpack_from(payload)
    end = head + length
    if len(payload) < end:
        raise ValueError(record_id)
    stream = payload[head:end].decode("utf-8", "surrogatepass")
    message = payload[end:].decode("utf-8", "surrogatepass")
    return SpooledRecord(record_id, timestamp, stream, message)


def file_start(data: bytes, kind: int) -> tuple[int, bool]:
    """Where frames begin, and whether the file is of a newer format version."""
    if len(data) >= FILE_HEADER.size:
        magic, version, found_kind = FILE_HEADER.unpack_from(data)
        if magic == FILE_MAGIC and found_kind == kind:
            return FILE_HEADER.size, version > FORMAT_VERSION
    return 0, False  # a damaged header: resynchronise on the first frame


class Frames:
    """The valid frames of ``[start, end)`` of a file, read in bounded chunks.

    Iterate for ``(payload, frame_end)`` pairs. Damage (bytes that are not a valid frame)
    is stepped over up to the next frame that checks out; ``regions`` counts the runs of
    damage met, ``damaged_tail`` says whether one follows the last valid frame.

    Args:
        read: ``read(offset, size)`` returns up to ``size`` bytes at ``offset``.
        start: Where frames begin, in bytes.
        end: Where the file ends, in bytes.
    """

    def __init__(self, read: Callable[[int, int], bytes], start: int, end: int) -> None:
        self._read = read
        self._start = start
        self._end = end
        # Failed checksums may cost a few times the file, no more: beyond that, a frame
        # longer than what is left of the budget is taken for damage unchecked.
        self._budget = 4 * max(0, end - start) + MAX_FRAME
        self.regions = 0
        self.damaged_tail = False
        self._buffer = b""
        self._base = start

    def _cover(self, position: int, upto: int) -> bool:
        """Hold bytes ``[position, upto)`` in the buffer; False past the file's end."""
        if position - self._base >= _CHUNK:
            self._buffer = self._buffer[position - self._base :]
            self._base = position
        have = self._base + len(self._buffer)
        if have < upto <= self._end:
            want = min(max(upto - have, _CHUNK), self._end - have)
            data = self._read(have, want)
            self._buffer += data
            if len(data) < want:  # shorter than it was: the end is where reading ends
                self._end = have + len(data)
        return upto <= self._base + len(self._buffer)

    def _valid(self, position: int) -> int:
        """Where the frame at ``position`` ends, if one checks out there; else 0."""
        if not self._cover(position, position + FRAME_SIZE):
            return 0
        at = position - self._base
        if not self._buffer.startswith(SYNC, at):
            return 0
        length: int
        crc: int
        _, length, crc = FRAME.unpack_from(self._buffer, at)
        stop = position + FRAME_SIZE + length
        if length > MAX_PAYLOAD or stop > self._end:
            return 0
        if length > self._budget:
            return 0
        if not self._cover(position, stop):
            return 0
        at = position - self._base
        if crc32(memoryview(self._buffer)[at + FRAME_SIZE : at + FRAME_SIZE + length]) != crc:
            self._budget -= length
            return 0
        return stop

    def _next_sync(self, position: int) -> int:
        """The next sync mark after ``position``, or the file's end."""
        position += 1
        while True:
            self._cover(position, min(position + _CHUNK, self._end))
            found = self._buffer.find(SYNC, position - self._base)
            if found >= 0:
                return self._base + found
            have = self._base + len(self._buffer)
            if have >= self._end:
                return self._end
            position = max(position, have - 1)

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        position = self._start
        while position < self._end:
            stop = self._valid(position)
            if stop:
                at = position - self._base
                payload = self._buffer[at + FRAME_SIZE : stop - self._base]
                self.damaged_tail = False
                yield payload, stop
                position = stop
                continue
            if not self.damaged_tail:
                self.regions += 1
                self.damaged_tail = True
            position = self._next_sync(position)
