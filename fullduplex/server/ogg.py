"""Ogg pages, checked: the container of Moshi's audio messages (RFC 3533, RFC 7845 for Opus in Ogg).

sphn decodes the Opus stream but trusts its input (a page with a wrong checksum is decoded anyway).
``OggOpusChecker`` reads the same bytes first and turns anything that is not one mono Ogg/Opus
stream into a ``BadAudio`` with a reason a client can act on. It keeps no audio, only the bytes of
a page not yet complete (bounded by the largest page Ogg allows).
"""

from __future__ import annotations

import struct

CAPTURE = b"OggS"
HEADER = struct.Struct("<4sBBqIIIB")       # capture, version, type, granule, serial, sequence, crc, segments
MAX_PAGE = HEADER.size + 255 + 255 * 255   # the largest page the format can describe
BOS, EOS = 0x02, 0x04


class BadAudio(ValueError):
    """The client's audio is not the Ogg/Opus stream the protocol asks for."""


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, no reflection, initial value 0)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


class OggOpusChecker:
    """Feed the stream as it arrives, in any chunking; raises ``BadAudio`` at the first wrong byte."""

    def __init__(self, channels: int = 1) -> None:
        self.channels = channels
        self._buf = b""
        self._serial: int | None = None
        self._seq = -1
        self._packets = 0        # complete packets seen (0: expecting OpusHead, 1: OpusTags)
        self._partial = b""      # the header packet being assembled across pages (headers only)
        self.pages = 0
        self.ended = False

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
        if self._packets >= 2:
            return                      # audio pages: nothing more to check here
        pos = 0
        for value in lacing:
            self._partial += body[pos:pos + value]
            pos += value
            if value < 255:
                self._header_packet(self._partial)
                self._partial = b""
                if self._packets >= 2:
                    return
        if len(self._partial) > 65536:
            raise BadAudio("Opus header packet too large")

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
