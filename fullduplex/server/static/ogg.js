// Ogg/Opus in the browser: WebCodecs gives raw Opus packets, Moshi's protocol carries Ogg pages
// (RFC 3533, RFC 7845). OggOpusMuxer wraps encoded packets into pages; OggDemuxer takes the
// server's byte stream, in any chunking, back to packets.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = (r & 0x80000000) ? ((r << 1) ^ 0x04c11db7) : (r << 1);
    table[i] = r >>> 0;
  }
  return table;
})();

export function oggCrc(bytes) {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ bytes[i]) & 0xff]) >>> 0;
  return crc;
}

function concat(parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) { out.set(p, pos); pos += p.length; }
  return out;
}

const ascii = (s) => new TextEncoder().encode(s);

export function opusHead(channels, inputRate, preSkip = 312) {
  const head = new Uint8Array(19);
  const view = new DataView(head.buffer);
  head.set(ascii("OpusHead"), 0);
  head[8] = 1;                              // version
  head[9] = channels;
  view.setUint16(10, preSkip, true);
  view.setUint32(12, inputRate, true);
  view.setInt16(16, 0, true);               // output gain
  head[18] = 0;                             // channel mapping family 0 (mono/stereo)
  return head;
}

function opusTags(vendor) {
  const v = ascii(vendor);
  const tags = new Uint8Array(8 + 4 + v.length + 4);
  const view = new DataView(tags.buffer);
  tags.set(ascii("OpusTags"), 0);
  view.setUint32(8, v.length, true);
  tags.set(v, 12);
  view.setUint32(12 + v.length, 0, true);   // no user comments
  return tags;
}

export class OggOpusMuxer {
  constructor({ channels = 1, inputRate = 48000, head = null } = {}) {
    this.serial = (Math.random() * 0xffffffff) >>> 0;
    this.sequence = 0;
    this.granule = 0;                       // always counted in 48 kHz samples for Opus
    this.head = head || opusHead(channels, inputRate);
  }

  // The two header pages (OpusHead with the beginning-of-stream flag, then OpusTags).
  headers() {
    return concat([this.page(0x02, 0, [this.head]), this.page(0x00, 0, [opusTags("fullduplex web client")])]);
  }

  // One page holding one packet of `samples48k` samples (960 for 20 ms).
  packet(data, samples48k) {
    this.granule += samples48k;
    return this.page(0x00, this.granule, [data]);
  }

  page(flags, granule, packets) {
    const lacing = [];
    for (const p of packets) {
      let n = p.length;
      while (n >= 255) { lacing.push(255); n -= 255; }
      lacing.push(n);
    }
    if (lacing.length > 255) throw new Error("packet too large for one Ogg page");
    const header = new Uint8Array(27 + lacing.length);
    const view = new DataView(header.buffer);
    header.set(ascii("OggS"), 0);
    header[4] = 0;
    header[5] = flags;
    view.setBigUint64(6, BigInt(granule), true);
    view.setUint32(14, this.serial, true);
    view.setUint32(18, this.sequence++, true);
    view.setUint32(22, 0, true);
    header[26] = lacing.length;
    header.set(lacing, 27);
    const page = concat([header, ...packets]);
    new DataView(page.buffer).setUint32(22, oggCrc(page), true);
    return page;
  }
}

export class OggDemuxer {
  constructor() {
    this.buffer = new Uint8Array(0);
    this.partial = [];                      // pieces of a packet continued on the next page
  }

  // Feed bytes; returns the packets completed by them (OpusHead and OpusTags included).
  push(bytes) {
    this.buffer = this.buffer.length ? concat([this.buffer, bytes]) : bytes;
    const packets = [];
    for (;;) {
      const b = this.buffer;
      if (b.length < 27) break;
      if (b[0] !== 0x4f || b[1] !== 0x67 || b[2] !== 0x67 || b[3] !== 0x53) throw new Error("not an Ogg stream");
      const nseg = b[26];
      if (b.length < 27 + nseg) break;
      let size = 27 + nseg;
      for (let i = 0; i < nseg; i++) size += b[27 + i];
      if (b.length < size) break;
      let pos = 27 + nseg;
      for (let i = 0; i < nseg; i++) {
        const len = b[27 + i];
        this.partial.push(b.subarray(pos, pos + len));
        pos += len;
        if (len < 255) { packets.push(concat(this.partial)); this.partial = []; }
      }
      this.buffer = b.slice(size);
    }
    return packets;
  }
}
