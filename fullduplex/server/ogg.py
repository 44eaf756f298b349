"""Ogg pages: the container of Moshi's audio messages (RFC 3533, RFC 7845 for Opus in Ogg), both ways.

``OggOpusChecker`` reads a client's bytes and turns anything that is not one mono Ogg/Opus stream into a
``BadAudio`` with a reason a client can act on; the Opus packets it finds wait for ``take_packets``. It
keeps only those and the bytes of a page not yet complete (bounded by the largest page Ogg allows).
``OggOpusReader`` decodes what the checker passes; ``OggOpusWriter`` encodes a stream into pages, one
packet per page (libopus through ``audio/opus.py``).
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from ..audio.opus import OGG_RATE, OpusDecoder, OpusEncoder, OpusSettings

CAPTURE = b"OggS"
HEADER = struct.Struct("<4sBBqIIIB")       # capture, version, type, granule, serial, sequence, crc, segments
MAX_PAGE = HEADER.size + 255 + 255 * 255   # the largest page the format can describe
BOS, EOS = 0x02, 0x04


class BadAudio(ValueError):
    """The client's audio is not the Ogg/Opus stream the protocol asks for."""


_BITS_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, no reflection, initial value 0, no final xor), in C: zlib's
    CRC-32 is the same polynomial bit-reflected, so run it on the bytes' bits reversed and reverse its
    result; its initial and final 0xFFFFFFFF cancel against the CRC of as many zero bytes (a CRC is
    affine in its initial value). A Python loop over the bytes cost 27 us a page; this, 2 us."""
    crc = zlib.crc32(data.translate(_BITS_REVERSED)) ^ zlib.crc32(bytes(len(data)))
    return int(f"{crc:032b}"[::-1], 2)


class OggOpusChecker:
    """Feed the stream as it arrives, in any chunking; raises ``BadAudio`` at the first wrong byte."""

    def __init__(self, channels: int = 1) -> None:
        self.channels = channels
        self._buf = b""
        self._serial: int | None = None
        self._seq = -1
        self._packets = 0        # complete packets seen (0: expecting OpusHead, 1: OpusTags)
        self._partial = b""      # the packet being assembled across pages
        self._audio: list[bytes] = []   # audio packets not yet taken
        self.pages = 0
        self.ended = False

    def take_packets(self) -> list[bytes]:
        """The audio packets completed since the last call (headers are checked, not returned)."""
        packets, self._audio = self._audio, []
        return packets

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            if len(self._buf) < HEADER.size:
                if self._buf and not CAPTURE.startswith(self._buf[:4]):
                    raise BadAudio("not an Ogg stream (a page must start with 'OggS')")
                return
            capture, version, flags, _granule, serial, seq, crc, nseg = HEADER.unpack_from(self._buf)
            if capture != CAPTURE:
                raise BadAudio("not an Ogg stream (a page must start with 'OggS')")
            if version != 0:
                raise BadAudio(f"unsupported Ogg version {version}")
            if len(self._buf) < HEADER.size + nseg:
                return
            lacing = self._buf[HEADER.size:HEADER.size + nseg]
            size = HEADER.size + nseg + sum(lacing)
            if len(self._buf) < size:
                return
            page, self._buf = self._buf[:size], self._buf[size:]
            if ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != crc:
                raise BadAudio(f"Ogg page {seq}: checksum mismatch (corrupted or not Ogg)")
            self._page(flags, serial, seq, lacing, page[HEADER.size + nseg:])

    def _page(self, flags: int, serial: int, seq: int, lacing: bytes, body: bytes) -> None:
        if self.ended:
            raise BadAudio("audio after the end of the Ogg stream")
        if self._serial is None:
            if not flags & BOS:
                raise BadAudio("the first Ogg page must begin the stream (BOS flag)")
            self._serial = serial
        elif serial != self._serial or flags & BOS:
            raise BadAudio("one Ogg/Opus stream per connection (a second stream began)")
        self._seq = seq
        self.pages += 1
        if flags & EOS:
            self.ended = True
        pos = 0
        for value in lacing:
            self._partial += body[pos:pos + value]
            pos += value
            if value < 255:             # a packet ends here (255: it goes on in the next segment)
                packet, self._partial = self._partial, b""
                if self._packets < 2:
                    self._header_packet(packet)
                elif packet:
                    self._audio.append(packet)
        if len(self._partial) > 65536:
            raise BadAudio("Opus packet too large")

    def _header_packet(self, packet: bytes) -> None:
        if self._packets == 0:
            if len(packet) < 19 or not packet.startswith(b"OpusHead"):
                raise BadAudio("the stream does not start with an OpusHead packet (not Opus)")
            if packet[8] >> 4 != 0:
                raise BadAudio(f"unsupported OpusHead version {packet[8]}")
            if packet[9] != self.channels:
                raise BadAudio(f"the Opus stream has {packet[9]} channels; send mono ({self.channels})")
        elif not packet.startswith(b"OpusTags"):
            raise BadAudio("the second Opus packet must be OpusTags")
        self._packets += 1


class OggOpusReader:
    """A client's Ogg/Opus bytes, in any chunking -> mono float samples at ``rate``. Raises ``BadAudio``
    for a stream that is not Ogg/Opus and ``OpusError`` for a packet libopus cannot decode. The decoder's
    pre-skip is not cut: a live stream's first few ms are silence, and its clock is the arrival's."""

    def __init__(self, rate: int) -> None:
        self.checker = OggOpusChecker(channels=1)
        self._decoder = OpusDecoder(rate)

    def append_bytes(self, data: bytes) -> np.ndarray:
        self.checker.feed(data)
        decoded = [self._decoder.decode(p) for p in self.checker.take_packets()]
        return np.concatenate(decoded) if decoded else np.zeros(0, np.float32)


class OggOpusWriter:
    """Mono float samples at ``rate``, in any chunking -> Ogg pages: the two header pages with the first
    call, then one page per Opus packet as each frame fills (``OpusSettings.frame_ms``)."""

    def __init__(self, rate: int, settings: OpusSettings = OpusSettings()) -> None:
        self._encoder = OpusEncoder(rate, settings)
        self._rate = rate
        self._serial = int.from_bytes(os.urandom(4), "little")
        self._seq = 0
        self._granule = 0        # 48 kHz samples through the last page's packet (RFC 7845 counts at 48 kHz)
        self._pending = np.zeros(0, np.float32)

    def append_pcm(self, pcm: np.ndarray) -> bytes:
        pages = [] if self._seq else [self._headers()]
        self._pending = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        n = self._encoder.frame_samples
        while len(self._pending) >= n:
            packet = self._encoder.encode(self._pending[:n])
            self._pending = self._pending[n:]
            self._granule += n * OGG_RATE // self._rate
            pages.append(self._page(packet, self._granule))
        return b"".join(pages)

    def _headers(self) -> bytes:
        pre_skip = self._encoder.lookahead * OGG_RATE // self._rate
        head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, self._rate, 0, 0)
        vendor = b"fullduplex (libopus)"
        tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
        return self._page(head, 0, BOS) + self._page(tags, 0)

    def _page(self, packet: bytes, granule: int, flags: int = 0) -> bytes:
        lacing = bytes([255] * (len(packet) // 255) + [len(packet) % 255])
        page = bytearray(HEADER.pack(CAPTURE, 0, flags, granule, self._serial, self._seq, 0, len(lacing)))
        page += lacing + packet
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        self._seq += 1
        return bytes(page)
