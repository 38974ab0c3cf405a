// Payloads and digests shared by the Node peers; the same rules as interop_support.py.
'use strict';

const crypto = require('crypto');

const TEXT_UNIT = 'wskit ✓ 😀 é € 𝄞 | ';

function payload(kind, size) {
  if (kind === 'text') {
    const raw = size ? Buffer.alloc(size, Buffer.from(TEXT_UNIT)) : Buffer.alloc(0);
    let text = raw.toString('utf8');
    // A character cut at the end decodes to one U+FFFD, which the unit never contains.
    if (text.endsWith('\ufffd')) text = text.slice(0, -1);
    return text + '.'.repeat(size - Buffer.byteLength(text));
  }
  const out = Buffer.alloc(size);
  if (kind === 'binary') {
    for (let i = 0; i < size; i++) out[i] = i % 251;
    return out;
  }
  if (kind === 'noise') {
    let x = 2463534242;
    for (let i = 0; i < size; i++) {
      x = (x ^ (x << 13)) >>> 0;
      x = (x ^ (x >>> 17)) >>> 0;
      x = (x ^ (x << 5)) >>> 0;
      out[i] = x & 0xff;
    }
    return out;
  }
  throw new Error(`unknown kind ${kind}`);
}

function encoded(kind, size) {
  const data = payload(kind, size);
  return typeof data === 'string' ? Buffer.from(data) : data;
}

function split(data, sizes) {
  const pieces = [];
  let start = 0;
  for (const n of sizes.slice(0, -1)) {
    pieces.push(data.subarray(start, start + n));
    start += n;
  }
  pieces.push(data.subarray(start));
  return pieces;
}

// A message as the matrix compares it: kind, size in bytes, SHA-256 (and short texts).
function summary(data, isBinary) {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  const out = {
    kind: isBinary ? 'binary' : 'text',
    size: bytes.length,
    sha: crypto.createHash('sha256').update(bytes).digest('hex'),
  };
  if (!isBinary && bytes.length <= 4096) out.text = bytes.toString('utf8');
  return out;
}

module.exports = { payload, encoded, split, summary };
