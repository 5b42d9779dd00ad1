// One core of a browser volunteer: runs WASI preview 1 command modules,
// one task at a time, as the native slave's sandbox does: argv is the
// module's name, no environment, no preopened directory (so no files),
// no sockets; stdin is the task's payload, stdout its result, bounded.
// The page compiles each module once and posts it here; a task whose
// deadline passes is ended by the page, which terminates this worker.

import { WASI, WASIProcExit, File, OpenFile, ConsoleStdout } from '/static/vendor/browser_wasi_shim/index.js';

// stderrTail is how much of stderr an error quotes: its end, where a Go
// panic or a failed check says what went wrong.
const stderrTail = 1024;

class OutputTooLarge extends Error {}

// run runs one task: {id, module (a WebAssembly.Module), name, payload
// (Uint8Array), maxOutput}. It answers {id, output} or {id, err}, with
// the time it ran in µs.
async function run(msg) {
  const { module, name, payload, maxOutput } = msg;
  const out = [];
  let outBytes = 0;
  let errBuf = new Uint8Array(0);
  const stdout = new ConsoleStdout((chunk) => {
    if (maxOutput > 0 && outBytes + chunk.length > maxOutput) {
      throw new OutputTooLarge(`module stopped: stdout exceeded ${maxOutput} bytes: output too large`);
    }
    out.push(chunk);
    outBytes += chunk.length;
  });
  const stderr = new ConsoleStdout((chunk) => {
    const b = new Uint8Array(Math.min(errBuf.length + chunk.length, stderrTail));
    const all = new Uint8Array(errBuf.length + chunk.length);
    all.set(errBuf);
    all.set(chunk, errBuf.length);
    b.set(all.subarray(all.length - b.length));
    errBuf = b;
  });
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

function withStderr(msg, tail) {
  const s = new TextDecoder('utf-8').decode(tail).trim();
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
