// The frames of the slave protocol (protocol/messages.go), encoded as
// protocol/codec.go does: a type byte, then JSON for Hello, Welcome and
// Error, or a binary body of unsigned LEB128 varints (encoding/binary's
// Uvarint, up to 64 bits), zig-zag varints and length-prefixed strings
// and bytes (internal/binenc). Only what a slave sends or receives is
// here. Task ids and leases are BigInt: a lease is a random uint64 and
// must be echoed exactly.

export const Type = {
  Hello: 1, Welcome: 2, Error: 3,
  Dispatch: 10, Results: 11, Request: 12, Return: 13, Cancel: 14, Modules: 15,
};

export const Version = 4;

const MASK64 = (1n << 64n) - 1n;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8');

// Writer grows a byte buffer.
class Writer {
  constructor(size = 64) { this.buf = new Uint8Array(size); this.n = 0; }
  room(k) {
    if (this.n + k <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.n + k));
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
  }
  byte(v) { this.room(1); this.buf[this.n++] = v; }
  // uvarint writes v (a Number below 2^53 or a BigInt below 2^64).
  uvarint(v) {
    if (typeof v === 'bigint') {
      if (v < 0n || v > MASK64) throw new RangeError('uvarint out of range: ' + v);
      while (v >= 0x80n) { this.byte(Number(v & 0x7fn) | 0x80); v >>= 7n; }
      this.byte(Number(v));
      return;
    }
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError('uvarint out of range: ' + v);
    while (v >= 0x80) { this.byte((v % 0x80) | 0x80); v = Math.floor(v / 0x80); }
    this.byte(v);
  }
  // varint writes a signed BigInt zig-zag encoded, as binary.AppendVarint.
  varint(v) { this.uvarint(v >= 0n ? v << 1n : ((-v) << 1n) - 1n); }
  bytes(b) { this.uvarint(b.length); this.room(b.length); this.buf.set(b, this.n); this.n += b.length; }
  string(s) { this.bytes(utf8.encode(s)); }
  done() { return this.buf.slice(0, this.n); }
}

// Reader reads a body; any fault throws a MalformedError.
export class MalformedError extends Error {}

class Reader {
  constructor(b) { this.b = b; this.i = 0; }
  fail(what, why) { throw new MalformedError(`bad ${what}: ${why}`); }
  // uvarintBig reads an unsigned varint of up to 64 bits as a BigInt.
  uvarintBig(what) {
    let v = 0n, shift = 0n;
    for (let k = 0; k < 10; k++) {
      if (this.i >= this.b.length) this.fail(what, 'truncated');
      const c = this.b[this.i++];
      if (k === 9 && c > 1) this.fail(what, 'varint overflows 64 bits');
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return v;
      shift += 7n;
    }
    this.fail(what, 'varint overflows 64 bits');
  }
  // uvarint reads an unsigned varint that must be a safe Number.
  uvarint(what) {
    const v = this.uvarintBig(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(what, `${v} is too large`);
    return Number(v);
  }
  uint32(what) {
    const v = this.uvarint(what);
    if (v > 0xffffffff) this.fail(what, `${v} overflows uint32`);
    return v;
  }
  varint(what) {
    const u = this.uvarintBig(what);
    return (u & 1n) ? -((u >> 1n) + 1n) : u >> 1n;
  }
  count(what, minSize) {
    const n = this.uvarint(what);
    if (n > Math.floor((this.b.length - this.i) / minSize)) this.fail(what, `${n} exceeds the ${this.b.length - this.i} bytes left`);
    return n;
  }
  bytes(what) {
    const n = this.uvarint(what + ' length');
    if (n > this.b.length - this.i) this.fail(what, `length ${n} exceeds the ${this.b.length - this.i} bytes left`);
    const v = this.b.slice(this.i, this.i + n);
    this.i += n;
    return v;
  }
  string(what) { return fromUtf8.decode(this.bytes(what)); }
  end() { if (this.i !== this.b.length) throw new MalformedError(`${this.b.length - this.i} trailing bytes`); }
}

// idsBody writes ids (BigInt) as protocol's appendIDs: a count, then the
// zig-zag difference of each id from the one before, modulo 2^64.
function idsBody(w, ids) {
  w.uvarint(ids.length);
  let prev = 0n;
  for (const id of ids) {
    let d = (id - prev) & MASK64;
    if (d >= 1n << 63n) d -= 1n << 64n; // as int64(id-prev)
    w.varint(d);
    prev = id;
  }
}

// encodeHello, encodeResults, encodeRequest, encodeReturn and
// encodeModules return a whole frame (Uint8Array).
export function encodeHello(h) {
  const json = utf8.encode(JSON.stringify(h));
  const f = new Uint8Array(1 + json.length);
  f[0] = Type.Hello;
  f.set(json, 1);
  return f;
}

// results: [{id, attempt, lease, durationMicros, err, output}]
export function encodeResults(results) {
  const w = new Writer(64 + results.reduce((s, r) => s + r.output.length + r.err.length * 3 + 40, 0));
  w.byte(Type.Results);
  w.uvarint(results.length);
  for (const r of results) {
    w.uvarint(r.id);
    w.uvarint(r.attempt);
    w.uvarint(r.lease);
    w.uvarint(Math.max(0, Math.round(r.durationMicros)));
    w.string(r.err);
    w.bytes(r.output);
  }
  return w.done();
}

// resultSize bounds the encoded size of one result in a Results frame.
export function resultSize(r) { return r.output.length + utf8.encode(r.err).length + 5 * 10 + 2 * 10; }

export function encodeRequest(n) {
  const w = new Writer(8);
  w.byte(Type.Request);
  w.uvarint(n);
  return w.done();
}

export function encodeReturn(ids) {
  const w = new Writer(8 + ids.length * 3);
  w.byte(Type.Return);
  idsBody(w, ids);
  return w.done();
}

export function encodeModules(hashes) {
  const w = new Writer(8 + hashes.length * 66);
  w.byte(Type.Modules);
  w.uvarint(hashes.length);
  for (const h of hashes) w.string(h);
  return w.done();
}

// decode parses a frame from the master: {type, ...fields}. Welcome and
// Error keep their JSON fields; a Dispatch has tasks [{id, attempt,
// lease, kind, module, timeoutMillis, payload}], a Cancel ids.
export function decode(frame) {
  const b = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  if (b.length === 0) throw new MalformedError('empty frame');
  const t = b[0];
  const r = new Reader(b.subarray(1));
  switch (t) {
    case Type.Welcome:
    case Type.Error:
    case Type.Hello: {
      let body;
      try {
        body = JSON.parse(fromUtf8.decode(b.subarray(1)));
      } catch (e) {
        throw new MalformedError(`frame type ${t}: ${e.message}`);
      }
      return { type: t, ...body };
    }
    case Type.Dispatch: {
      const n = r.count('task count', 6);
      const tasks = [];
      for (let i = 0; i < n; i++) {
        tasks.push({
          id: r.uvarintBig('task id'),
          attempt: r.uint32('attempt'),
          lease: r.uvarintBig('lease'),
          kind: r.string('kind'),
          module: r.string('module'),
          timeoutMillis: r.uvarint('timeout'),
          payload: r.bytes('payload'),
        });
      }
      r.end();
      return { type: t, tasks };
    }
    case Type.Cancel: {
      const n = r.count('id count', 1);
      const ids = [];
      let prev = 0n;
      for (let i = 0; i < n; i++) {
        prev = (prev + r.varint('id')) & MASK64;
        ids.push(prev);
      }
      r.end();
      return { type: t, ids };
    }
  }
  throw new MalformedError(`unexpected message type ${t} for a slave`);
}
