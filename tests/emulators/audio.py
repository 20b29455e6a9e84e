"""Small, real audio files for the fake speech endpoint, written in pure Python (no encoder, no download).

- ``ogg_opus(seconds)``: an Ogg container (RFC 3533, CRC-checked pages) holding an Opus stream
  (RFC 7845: OpusHead, OpusTags) of 20 ms silent CELT frames (``F8 FF FE``, the frame WebRTC and
  Discord send for silence); players and Telegram accept it as a voice note.
- ``mp3(seconds)``: MPEG-1 Layer III frames, 128 kbit/s 44.1 kHz mono, with empty side information
  (every granule decodes to silence); browsers play it.
- ``wav(seconds)``: 16-bit PCM silence through the standard library.

``parse_ogg_opus`` reads a file back the way a decoder's demuxer does (capture pattern, page CRC,
OpusHead, packet lacing, granule positions) so tests can check the bytes a provider received.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass

OPUS_SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
SILENT_OPUS_FRAME = b"\xf8\xff\xfe"
PRE_SKIP = 312
MP3_HEADER = b"\xff\xfb\x90\xc0"  # MPEG-1 Layer III, no CRC, 128 kbit/s, 44.1 kHz, mono
MP3_FRAME_BYTES = 417  # 144 * 128000 / 44100, no padding
MP3_FRAME_SECONDS = 1152 / 44_100


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _page(packets: list[bytes], *, serial: int, sequence: int, granule: int, flags: int) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing.extend([255] * (len(packet) // 255))
        lacing.append(len(packet) % 255)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing))
    page = bytearray(header + bytes(lacing) + b"".join(packets))
    struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
    return bytes(page)


def ogg_opus(seconds: float = 1.0, *, serial: int = 0x626F746C) -> bytes:
    head = struct.pack("<8sBBHIhB", b"OpusHead", 1, 1, PRE_SKIP, OPUS_SAMPLE_RATE, 0, 0)
    vendor = b"botline-tests"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    frames = max(1, round(seconds * OPUS_SAMPLE_RATE / FRAME_SAMPLES))
    pages = [_page([head], serial=serial, sequence=0, granule=0, flags=0x02),
             _page([tags], serial=serial, sequence=1, granule=0, flags=0)]
    per_page = 50  # one second of audio per page
    for index, start in enumerate(range(0, frames, per_page)):
        count = min(per_page, frames - start)
        last = start + count >= frames
        granule = PRE_SKIP + (start + count) * FRAME_SAMPLES
        pages.append(_page([SILENT_OPUS_FRAME] * count, serial=serial, sequence=2 + index, granule=granule,
                           flags=0x04 if last else 0))
    return b"".join(pages)


def mp3(seconds: float = 1.0) -> bytes:
    frame = MP3_HEADER + bytes(MP3_FRAME_BYTES - len(MP3_HEADER))
    return frame * max(1, round(seconds / MP3_FRAME_SECONDS))


def wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(2 * int(rate * seconds)))
    return buffer.getvalue()


@dataclass(frozen=True)
class OpusStream:
    channels: int
    input_rate: int
    packets: int
    seconds: float


def parse_ogg_opus(data: bytes) -> OpusStream:
    """Demuxes an Ogg/Opus file; ValueError when any page or header is not valid."""
    offset, packets, granule, partial = 0, [], 0, b""
    while offset < len(data):
        if data[offset:offset + 4] != b"OggS":
            raise ValueError(f"no Ogg capture pattern at byte {offset}")
        (_, _, _, page_granule, _, _, crc, segments) = struct.unpack_from("<4sBBqIIIB", data, offset)
        lacing = data[offset + 27:offset + 27 + segments]
        end = offset + 27 + segments + sum(lacing)
        page = bytearray(data[offset:end])
        struct.pack_into("<I", page, 22, 0)
        if ogg_crc(bytes(page)) != crc:
            raise ValueError(f"bad CRC in the page at byte {offset}")
        body = offset + 27 + segments
        for size in lacing:
            partial += data[body:body + size]
            body += size
            if size < 255:
                packets.append(partial)
                partial = b""
        granule = max(granule, page_granule)
        offset = end
    if len(packets) < 3 or not packets[0].startswith(b"OpusHead") or not packets[1].startswith(b"OpusTags"):
        raise ValueError("not an Opus stream (OpusHead and OpusTags expected first)")
    _, version, channels, pre_skip, rate, _, _ = struct.unpack_from("<8sBBHIhB", packets[0])
    if version != 1 or channels < 1:
        raise ValueError("unsupported OpusHead")
    audio = packets[2:]
    if any(not packet for packet in audio):
        raise ValueError("an empty Opus packet")
    return OpusStream(channels=channels, input_rate=rate, packets=len(audio),
                      seconds=(granule - pre_skip) / OPUS_SAMPLE_RATE)
