// capMemory bounds the memory a module may grow to, as the native slave's
// sandbox does (sandbox.DefaultWASMMemory): it rewrites the limits of the
// memories the module defines so that their maximum is at most maxPages
// (64 KiB pages). A module past it sees memory.grow fail, as under the
// native cap, instead of taking the volunteer's tab down with it. The
// page checks the module's hash on the bytes as served, before this.

export class MemoryError extends Error {}

const MEMORY_SECTION = 5;

export function capMemory(bytes, maxPages) {
  let i = 8; // magic and version
  while (i < bytes.length) {
    const id = bytes[i];
    const [size, n] = uleb(bytes, i + 1);
    const start = i + 1 + n;
    const end = start + Number(size);
    if (end > bytes.length) throw new MemoryError('truncated module');
    if (id === MEMORY_SECTION) {
      const body = rewrite(bytes.subarray(start, end), BigInt(maxPages));
      const head = [id, ...lebBytes(BigInt(body.length))];
      const out = new Uint8Array(i + head.length + body.length + (bytes.length - end));
      out.set(bytes.subarray(0, i));
      out.set(head, i);
      out.set(body, i + head.length);
      out.set(bytes.subarray(end), i + head.length + body.length);
      return out;
    }
    i = end;
  }
  return bytes; // no memory of its own
}

function rewrite(sec, cap) {
  let [count, k] = uleb(sec, 0);
  const out = [...lebBytes(count)];
  for (let m = 0n; m < count; m++) {
    const flags = sec[k++];
    const [min, a] = uleb(sec, k);
    k += a;
    let max = null;
    if (flags & 1) {
      const [v, b] = uleb(sec, k);
      k += b;
      max = v;
    }
    if (min > cap) {
      throw new MemoryError(`module asks for ${min * 64n / 1024n} MiB of memory at start; this volunteer gives a module at most ${cap * 64n / 1024n} MiB`);
    }
    out.push(flags | 1, ...lebBytes(min), ...lebBytes(max === null || max > cap ? cap : max));
  }
  if (k !== sec.length) throw new MemoryError('malformed memory section');
  return new Uint8Array(out);
}

function uleb(b, i) {
  let v = 0n, shift = 0n, n = 0;
  for (;;) {
    if (i + n >= b.length || n > 9) throw new MemoryError('malformed module');
    const c = b[i + n++];
    v |= BigInt(c & 0x7f) << shift;
    if (c < 0x80) return [v, n];
    shift += 7n;
  }
}

function lebBytes(v) {
  const out = [];
  do {
    let c = Number(v & 0x7fn);
    v >>= 7n;
    if (v) c |= 0x80;
    out.push(c);
  } while (v);
  return out;
}
