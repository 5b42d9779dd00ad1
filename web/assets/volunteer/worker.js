// One core of a browser volunteer: runs WASI preview 1 command modules,
// one task at a time, as the native slave's sandbox does: argv is the
// module's name, no environment, no preopened directory (so no files),
// no sockets; stdin is the task's payload, stdout its result, bounded.
// The page compiles each module once and posts it here; a task whose
// deadline passes is ended by the page, which terminates this worker.

import { WASI, WASIProcExit, File, OpenFile, ConsoleStdout } from '/static/vendor/browser_wasi_shim/index.js';

// An error quotes the start and the end of stderr, as the native
// sandbox does: a failed check says why at the end, a Go module's fatal
// error at the start, before its goroutines' stacks.
const stderrHead = 512;
const stderrTail = 1536;

// Stderr keeps the first stderrHead bytes and the last stderrTail.
class Stderr {
  constructor() { this.head = []; this.tail = new Uint8Array(0); this.total = 0; }
  write(chunk) {
    this.total += chunk.length;
    let p = chunk;
    const room = stderrHead - this.head.length;
    if (room > 0) {
      this.head.push(...p.subarray(0, room));
      p = p.subarray(Math.min(room, p.length));
    }
    const all = new Uint8Array(this.tail.length + p.length);
    all.set(this.tail);
    all.set(p, this.tail.length);
    this.tail = all.subarray(Math.max(0, all.length - stderrTail)).slice();
  }
  text() {
    const dec = (b) => new TextDecoder('utf-8').decode(new Uint8Array(b));
    if (this.total <= stderrHead + stderrTail) return (dec(this.head) + dec(this.tail)).trim();
    let head = dec(this.head), tail = dec(this.tail);
    const nl = head.lastIndexOf('\n');
    if (nl > 0) head = head.slice(0, nl);
    const tl = tail.indexOf('\n');
    if (tl >= 0 && tl < tail.length - 1) tail = tail.slice(tl + 1);
    return (head + '\n…\n' + tail).trim();
  }
}

class OutputTooLarge extends Error {}

// run runs one task: {id, module (a WebAssembly.Module), name, payload
// (Uint8Array), maxOutput}. It answers {id, output} or {id, err}, with
// the time it ran in µs.
async function run(msg) {
  const { module, name, payload, maxOutput } = msg;
  const out = [];
  let outBytes = 0;
  const errBuf = new Stderr();
  const stdout = new ConsoleStdout((chunk) => {
    if (maxOutput > 0 && outBytes + chunk.length > maxOutput) {
      throw new OutputTooLarge(`module stopped: stdout exceeded ${maxOutput} bytes: output too large`);
    }
    out.push(chunk);
    outBytes += chunk.length;
  });
  const stderr = new ConsoleStdout((chunk) => errBuf.write(chunk));
  const wasi = new WASI([name], [], [new OpenFile(new File(payload)), stdout, stderr], { debug: false });
  const start = performance.now();
  let code, err = '';
  try {
    const inst = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport });
    if (typeof inst.exports._start !== 'function') {
      err = 'module has no _start';
    } else {
      code = wasi.start(inst);
    }
  } catch (e) {
    if (e instanceof OutputTooLarge) {
      err = e.message;
    } else if (e instanceof WASIProcExit) {
      code = e.code;
    } else if (e instanceof WebAssembly.LinkError) {
      err = 'instantiating module: ' + e.message;
    } else {
      err = withStderr('module trapped: ' + (e && e.message ? e.message : String(e)), errBuf);
    }
  }
  const micros = (performance.now() - start) * 1000;
  if (!err && code !== 0) {
    err = withStderr(`module exited with code ${code}`, errBuf);
  }
  if (err) return { id: msg.id, err, micros };
  const output = new Uint8Array(outBytes);
  let at = 0;
  for (const c of out) { output.set(c, at); at += c.length; }
  return { id: msg.id, output, micros };
}

function withStderr(msg, stderr) {
  const s = stderr.text();
  return s ? `${msg}: ${s}` : msg;
}

self.onmessage = async (ev) => {
  let reply;
  try {
    reply = await run(ev.data);
  } catch (e) {
    reply = { id: ev.data.id, err: 'browser worker: ' + (e && e.message ? e.message : String(e)), micros: 0 };
  }
  if (reply.output) {
    self.postMessage(reply, [reply.output.buffer]);
  } else {
    self.postMessage(reply);
  }
};

self.postMessage({ ready: true });
