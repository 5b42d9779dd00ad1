// The browser volunteer: a slave of the master that served this page, in
// Web Workers, over the same protocol as `anthill slave` (a WebSocket to
// /ws/slave with binary frames, see codec.js). It runs kind "wasm" tasks
// only: each names its module by hash; the page fetches the module from
// /modules/{hash}, checks its SHA-256, compiles it once and hands it to a
// worker (worker.js) per core.
//
// Pause hands back the tasks not started (Return, which also tells the
// master to send this session no more) and lets running ones finish;
// resume opens a new session once they have. Stop and closing the page
// hand back everything, running tasks included, and close with 1000.

import * as codec from './codec.js';
import { sha256hex } from './sha256.js';
import { capMemory, MemoryError } from './memcap.js';

const $ = (id) => document.getElementById(id);
const KEY_TOKEN = 'anthill.volunteer.token';
const KEY_NAME = 'anthill.volunteer.name';
const KEY_CORES = 'anthill.volunteer.cores';
const software = 'anthill-browser/' + (document.body.dataset.version || 'dev');
// resultOverhead is room left in a frame beyond one result's bytes, as
// the native slave keeps.
const resultOverhead = 1024;
// Codes after which trying again cannot help until a person acts.
const fatalCodes = new Set(['unauthorized', 'unsupported_version', 'bad_handshake']);

// An invitation link carries its token in the fragment, which never
// reaches a server or a log: keep it, then take it out of the address bar.
// A link opened in a tab showing the page already changes only the
// fragment, so it is looked for again then.
function takeInvitation() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return false;
  const tok = decodeURIComponent(m[1]).trim();
  if (tok) localStorage.setItem(KEY_TOKEN, tok);
  history.replaceState(null, '', location.pathname + location.search);
  return !!tok;
}
takeInvitation();

const token = () => localStorage.getItem(KEY_TOKEN) || '';

// ---- modules ----

const compiled = new Map(); // hash → Promise<{module, name}>
const held = new Set(); // hashes compiled, announced to the master
const heldList = () => [...held];

class TaskError extends Error {}

// maxModuleBytes refuses a larger module, as the native slave's default.
const maxModuleBytes = 64 << 20;
// maxMemoryPages caps a module's memory at 256 MiB (64 KiB pages), the
// native sandbox's default.
const maxMemoryPages = (256 << 20) / 65536;

// maxCompiled bounds the modules kept compiled in memory; past it the
// least recently used is dropped (and no longer announced). It is well
// under protocol.MaxHeld, the most a Hello or Modules frame may name.
const maxCompiled = 64;

function loadModule(hash) {
  let p = compiled.get(hash);
  if (p) {
    compiled.delete(hash); // most recently used last
    compiled.set(hash, p);
  } else {
    p = fetchModule(hash);
    compiled.set(hash, p);
    if (compiled.size > maxCompiled) {
      const [oldest] = compiled.keys();
      compiled.delete(oldest);
      held.delete(oldest);
    }
    p.then(() => {
      if (compiled.get(hash) === p) held.add(hash);
      if (sess) sess.sendModules();
      render();
    }, () => {
      if (compiled.get(hash) === p) compiled.delete(hash); // a failure is not kept: a later task tries again
    });
  }
  return p;
}

async function fetchModule(hash) {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new TaskError(`not a module hash: ${JSON.stringify(hash.slice(0, 80))}`);
  let resp;
  try {
    resp = await fetch('/modules/' + hash, { headers: { Authorization: 'Bearer ' + token() }, credentials: 'omit' });
  } catch (e) {
    throw new TaskError(`fetching module ${hash}: ${e.message}`);
  }
  if (!resp.ok) {
    const why = (await resp.text().catch(() => '')).trim().slice(0, 200);
    throw new TaskError(`fetching module ${hash}: HTTP ${resp.status}${why ? ': ' + why : ''}`);
  }
  const size = Number(resp.headers.get('Content-Length'));
  if (size > maxModuleBytes) throw new TaskError(`module ${hash} is larger than this volunteer's limit of ${maxModuleBytes} bytes`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  if (bytes.length > maxModuleBytes) throw new TaskError(`module ${hash} is larger than this volunteer's limit of ${maxModuleBytes} bytes`);
  const got = await sha256hex(bytes);
  if (got !== hash) {
    // Never compiled, let alone run.
    throw new TaskError(`module hash mismatch: the bytes served for ${hash} hash to ${got}`);
  }
  let module;
  try {
    module = await WebAssembly.compile(capMemory(bytes, maxMemoryPages));
  } catch (e) {
    throw new TaskError(e instanceof MemoryError ? `module ${hash}: ${e.message}` : `compiling module ${hash}: ${e.message}`);
  }
  // The module's name is its argv[0], as the native slave gives it.
  const name = (resp.headers.get('X-Anthill-Module-Name') || '').trim() || hash;
  return { module, name };
}

// ---- cores ----

const stats = { done: 0, failed: 0, micros: 0 };
let cores = [];
let runSeq = 0;

// Core is one Web Worker and the task it runs.
class Core {
  constructor(i) {
    this.i = i;
    this.job = null; // {task, sess, t0, runId, timer, phase}
    this.spawn();
  }

  spawn() {
    this.worker = new Worker('/static/volunteer/worker.js', { type: 'module', name: 'anthill core ' + (this.i + 1) });
    this.worker.onmessage = (ev) => this.reply(ev.data);
    // An error that reaches here is the worker's own (its script did not
    // load, say): a task's faults are answered as results. The core is
    // out of use, lest every task it takes wait for its deadline.
    this.worker.onerror = (ev) => {
      ev.preventDefault();
      this.broken = true;
      const msg = 'browser worker failed: ' + (ev.message || 'it could not start');
      if (this.job) this.finish({ err: msg });
      showMessage(`${msg}. Core ${this.i + 1} is out of use until Start again.`, true);
    };
  }

  // respawn replaces a worker whose run must end now (a deadline, a
  // Cancel): terminating is the only way to stop WebAssembly that loops.
  respawn() {
    this.worker.terminate();
    this.spawn();
  }

  async start(task, s) {
    const job = { task, sess: s, t0: performance.now(), runId: ++runSeq, phase: 'module' };
    this.job = job;
    if (task.timeoutMillis > 0) {
      job.timer = setTimeout(() => {
        if (this.job !== job) return;
        this.respawn();
        this.finish({ err: `module stopped at its deadline (timeout of ${fmtMillis(task.timeoutMillis)})` });
      }, task.timeoutMillis);
    }
    render();
    let mod;
    try {
      if (task.kind !== 'wasm') throw new TaskError(`this browser volunteer runs kind "wasm" only, not ${JSON.stringify(task.kind)}`);
      mod = await loadModule(task.module);
    } catch (e) {
      if (this.job === job) this.finish({ err: e instanceof TaskError ? e.message : 'module: ' + e.message });
      return;
    }
    if (this.job !== job) return; // canceled, timed out or abandoned meanwhile
    job.phase = 'run';
    render();
    this.worker.postMessage({ id: job.runId, module: mod.module, name: mod.name, payload: task.payload, maxOutput: s.maxOutput() });
  }

  reply(msg) {
    if (msg.ready || !this.job || msg.id !== this.job.runId) return;
    this.finish(msg.err ? { err: msg.err, micros: msg.micros } : { output: msg.output, micros: msg.micros });
  }

  // finish reports the job's outcome to its session, if that is still
  // the live one (the master took back the tasks of an ended session).
  finish({ err = '', output = new Uint8Array(0), micros }) {
    const job = this.job;
    this.job = null;
    clearTimeout(job.timer);
    if (micros === undefined) micros = (performance.now() - job.t0) * 1000;
    if (err) stats.failed++; else stats.done++;
    stats.micros += micros;
    job.sess.result(job.task, err, output, micros);
    afterJob();
  }

  // abandon drops the job without a result: canceled by the master, or
  // handed back.
  abandon() {
    const job = this.job;
    if (!job) return;
    this.job = null;
    clearTimeout(job.timer);
    if (job.phase === 'run') this.respawn();
  }
}

function fmtMillis(ms) {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function busy() { return cores.filter((c) => c.job).length; }

// afterJob runs when a core got free: more work, or the end of a pause.
function afterJob() {
  if (sess && sess.reopenWhenIdle && !cores.some((c) => c.job && c.job.sess === sess)) {
    sess.reopenWhenIdle = false;
    sess.close();
    if (want === 'run') connect();
  }
  pump();
  render();
}

// pump starts queued tasks on free cores.
function pump() {
  if (want !== 'run' || !sess) return;
  for (const c of cores) {
    if (c.job || c.broken) continue;
    const t = sess.queue.shift();
    if (!t) break;
    c.start(t, sess);
  }
}

// ---- the session ----

let want = 'stop'; // what the person asked for: run, pause or stop
let refusal = false; // stopped by a refusal only a person can act on
let sess = null; // the live session, or null
let retry = 0; // reconnect attempts since the last Welcome
let retryTimer = 0;

// Session is one WebSocket to /ws/slave and what the master gave it.
class Session {
  constructor(concurrency) {
    this.concurrency = concurrency;
    this.prefetch = concurrency;
    this.queue = []; // tasks dispatched and not started
    this.welcome = null;
    this.drained = false; // sent Return: the master sends no more
    this.reopenWhenIdle = false;
    this.closed = false;
    this.results = [];
    this.credit = 0; // poll: slots freed since the last Request
    this.flushQueued = false;
    const u = new URL('/ws/slave', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.ws = new WebSocket(u);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => this.hello();
    this.ws.onmessage = (ev) => this.frame(ev.data);
    this.ws.onclose = (ev) => this.lost(ev);
  }

  hello() {
    this.ws.send(codec.encodeHello({
      version: codec.Version, role: 'slave', name: volunteerName(), token: token(), software,
      os: 'browser', arch: 'wasm', cores: navigator.hardwareConcurrency || 1,
      memory_bytes: navigator.deviceMemory ? Math.round(navigator.deviceMemory * 2 ** 30) : undefined,
      kinds: ['wasm'], concurrency: this.concurrency, prefetch: this.prefetch, modules: heldList(),
    }));
  }

  send(frame) {
    if (!this.closed && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  maxOutput() {
    const w = this.welcome || {};
    const frameLimit = (w.max_frame_bytes || 16 << 20) - resultOverhead;
    return w.max_result_bytes > 0 ? Math.min(w.max_result_bytes, frameLimit) : frameLimit;
  }

  frame(data) {
    if (this.closed) return;
    let m;
    try {
      m = codec.decode(data);
    } catch (e) {
      // Its close (see lost) drops this session's work and tries again.
      showMessage('The master sent a frame this page cannot read: ' + e.message, true);
      this.close();
      return;
    }
    switch (m.type) {
      case codec.Type.Welcome: return this.welcomed(m);
      case codec.Type.Error: return this.refused(m);
      case codec.Type.Dispatch: return this.dispatch(m.tasks);
      case codec.Type.Cancel: return this.cancel(m.ids);
      default:
        showMessage(`The master sent an unexpected frame (type ${m.type}).`, true);
    }
  }

  welcomed(w) {
    this.welcome = w;
    retry = 0;
    if (w.volunteer_token) localStorage.setItem(KEY_TOKEN, w.volunteer_token);
    $('volunteer').textContent = w.volunteer || '';
    showMessage('');
    if (want === 'pause') this.drain();
    this.grant(this.concurrency + this.prefetch - this.queue.length);
    render();
  }

  // grant adds n free slots: the master is asked for them in the
  // polling pattern, and the sending pattern needs nothing.
  grant(n) {
    if (!this.welcome || this.welcome.dispatch !== 'poll' || this.drained || want !== 'run' || n <= 0) return;
    this.credit += n;
    this.schedule();
  }

  refused(e) {
    this.error = e;
    let msg = `The master closed the connection: ${e.message} (${e.code}). This page tries again.`;
    if (fatalCodes.has(e.code)) msg = `The master refused this volunteer: ${e.message} (${e.code}).`;
    if (e.code === 'unauthorized') {
      msg = token()
        ? `The master does not accept this browser's volunteer token: ${e.message}. Ask its operator for a new invitation link (it opens this page as /volunteer#token=…), or press “Forget token” to join without one if the master admits anyone.`
        : `This master admits enrolled volunteers only. Ask its operator for an invitation link (anthill volunteers enroll NAME gives the token; the link is ${location.origin}/volunteer#token=TOKEN) and open it in this browser.`;
    } else if (e.code === 'rate_limited') {
      msg = `The master is refusing this address for a while: ${e.message}. This page tries again later.`;
    } else if (e.code === 'shutting_down') {
      msg = 'The master is shutting down. This page reconnects when it is back.';
    }
    showMessage(msg, true);
  }

  dispatch(tasks) {
    if (want !== 'run' || this.drained) {
      // Frames crossed our Return: hand these back too.
      this.send(codec.encodeReturn(tasks.map((t) => t.id)));
      return;
    }
    for (const t of tasks) {
      this.queue.push(t);
      if (t.kind === 'wasm') loadModule(t.module).catch(() => {}); // fetch while waiting for a core
    }
    pump();
    render();
  }

  cancel(ids) {
    const set = new Set(ids);
    const before = this.queue.length;
    this.queue = this.queue.filter((t) => !set.has(t.id));
    let freed = before - this.queue.length;
    for (const c of cores) {
      if (c.job && c.job.sess === this && set.has(c.job.task.id)) {
        c.abandon();
        freed++;
      }
    }
    this.grant(freed);
    afterJob();
  }

  result(task, err, output, micros) {
    if (this !== sess || this.closed) return; // the master re-queued it when the session ended
    if (!err && output.length > this.maxOutput()) {
      err = `result of ${output.length} bytes exceeds the master's limit of ${this.maxOutput()} bytes`;
      output = new Uint8Array(0);
    }
    if (err) output = new Uint8Array(0);
    this.results.push({ id: task.id, attempt: task.attempt, lease: task.lease, durationMicros: micros, err, output });
    this.grant(1);
    this.schedule();
  }

  // schedule flushes once the current event is handled: what it finished
  // goes in one frame. A microtask, not a timer, which a background tab
  // would delay by up to a second.
  schedule() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => { if (this.flushQueued) this.flush(); });
  }

  // flush sends the finished results, in frames under the master's
  // limit, then the slots to ask for.
  flush() {
    this.flushQueued = false;
    const limit = (this.welcome ? this.welcome.max_frame_bytes : 16 << 20) - resultOverhead;
    while (this.results.length) {
      let n = 0, size = 0;
      while (n < this.results.length && n < 256) {
        const s = codec.resultSize(this.results[n]);
        if (n > 0 && size + s > limit) break;
        size += s;
        n++;
      }
      this.send(codec.encodeResults(this.results.splice(0, n)));
    }
    if (this.credit > 0 && !this.drained && want === 'run') {
      this.send(codec.encodeRequest(this.credit));
    }
    this.credit = 0;
  }

  sendModules() {
    if (this.welcome) this.send(codec.encodeModules(heldList()));
  }

  // drain hands back what has not started and tells the master to send
  // no more (a Return does both).
  drain() {
    if (!this.welcome || this.drained) return;
    this.flush();
    const ids = this.queue.map((t) => t.id);
    this.queue = [];
    this.send(codec.encodeReturn(ids));
    this.drained = true;
  }

  // leave hands back everything, running tasks too, and closes cleanly.
  leave() {
    if (this.closed) return;
    if (this.welcome) {
      this.flush();
      const ids = this.queue.map((t) => t.id);
      for (const c of cores) {
        if (c.job && c.job.sess === this) {
          ids.push(c.job.task.id);
          c.abandon();
        }
      }
      this.queue = [];
      this.send(codec.encodeReturn(ids));
    }
    this.close();
  }

  // close closes the WebSocket normally (1000, the only code below 3000
  // a page may send). The session stays the live one until the socket
  // has closed: lost then ends it.
  close() {
    if (this.closed) return;
    this.closed = true;
    this.flushQueued = false;
    this.ws.close(1000);
  }

  lost(ev) {
    const wasLive = sess === this;
    this.closed = true;
    if (!wasLive) return;
    sess = null;
    // Tasks of this session are the master's again: drop what runs.
    for (const c of cores) if (c.job && c.job.sess === this) c.abandon();
    if (this.error && fatalCodes.has(this.error.code)) {
      want = 'stop';
      refusal = true;
      stopCores();
      render();
      return;
    }
    if (!this.welcome && !this.error) {
      showMessage(`Could not connect to the master (WebSocket closed with code ${ev.code}). Trying again…`, true);
    }
    if (want === 'run') later();
    render();
  }
}

function later() {
  clearTimeout(retryTimer);
  const wait = Math.min(30000, 1000 * 2 ** Math.min(retry++, 5));
  retryTimer = setTimeout(() => { if (want === 'run' && !sess) connect(); }, wait);
}

function connect() {
  clearTimeout(retryTimer);
  sess = new Session(cores.length);
  render();
}

function volunteerName() {
  const n = $('name').value.trim() || 'browser';
  localStorage.setItem(KEY_NAME, n);
  return n.slice(0, 64);
}

function stopCores() {
  for (const c of cores) {
    c.abandon();
    c.worker.terminate();
  }
  cores = [];
}

// ---- what the buttons do ----

function start() {
  const n = Math.max(1, Math.min(Number($('cores').value) || 1, navigator.hardwareConcurrency || 64));
  $('cores').value = n;
  localStorage.setItem(KEY_CORES, String(n));
  showMessage('');
  want = 'run';
  refusal = false;
  retry = 0;
  cores = Array.from({ length: n }, (_, i) => new Core(i));
  connect();
}

function pause() {
  want = 'pause';
  if (sess) {
    sess.reopenWhenIdle = false;
    sess.drain();
  }
  render();
}

function resume() {
  want = 'run';
  if (!sess) {
    connect();
  } else if (sess.drained) {
    // A drained session gets no more work: a new one will, once the
    // tasks still running here have reported.
    sess.reopenWhenIdle = true;
    afterJob();
  } else {
    sess.grant(sess.concurrency + sess.prefetch - sess.queue.length - busy());
    pump();
  }
  render();
}

function stop() {
  want = 'stop';
  clearTimeout(retryTimer);
  if (sess) sess.leave();
  sess = null;
  stopCores();
  render();
}

// ---- the page ----

function showMessage(text, isError) {
  const el = $('message');
  el.textContent = text;
  el.className = isError ? 'error' : '';
}

function stateName() {
  if (want === 'stop') return refusal ? 'refused' : 'stopped';
  if (want === 'pause') return 'paused';
  return sess && sess.welcome ? 'connected' : 'connecting';
}

function fmtCPU(micros) {
  const s = micros / 1e6;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function render() {
  const state = stateName();
  const pill = $('state');
  pill.textContent = state;
  pill.dataset.state = state;
  pill.className = 'pill ' + (state === 'connected' ? 'on' : 'off');
  const set = (id, v, text) => { const el = $(id); el.dataset.value = String(v); el.textContent = text ?? v.toLocaleString(); };
  set('v-done', stats.done);
  set('v-failed', stats.failed);
  set('v-cpu', Math.round(stats.micros), fmtCPU(stats.micros));
  set('v-modules', held.size);
  $('start').disabled = want !== 'stop';
  $('cores').disabled = want !== 'stop';
  $('name').disabled = want !== 'stop';
  $('pause').disabled = want === 'stop';
  $('pause').textContent = want === 'pause' ? 'Resume' : 'Pause';
  $('stop').disabled = want === 'stop';
  $('forget').disabled = want !== 'stop' || !token();
  $('has-token').textContent = token() ? 'This browser holds a volunteer token.' : 'No volunteer token yet: the master gives one on first contact if it admits anyone.';
  const box = $('cores-list');
  const rows = cores.map((c) => {
    const j = c.job;
    const st = !j ? 'idle' : j.phase === 'module' ? 'loading' : 'running';
    const secs = j ? Math.floor((performance.now() - j.t0) / 1000) : 0;
    const what = !j ? 'idle' : `${j.phase === 'module' ? 'fetching the module of' : 'running'} task ${j.task.id}${secs ? ` for ${secs} s` : ''}`;
    return `<div class="core" data-state="${st}"><b>core ${c.i + 1}</b> <span>${what}</span></div>`;
  });
  box.innerHTML = rows.length ? rows.join('') : '<p class="muted">No cores running.</p>';
  box.dataset.busy = String(busy());
}

function init() {
  const hc = navigator.hardwareConcurrency || 2;
  $('cores').max = hc;
  $('cores').value = localStorage.getItem(KEY_CORES) || Math.max(1, Math.floor(hc / 2));
  $('name').value = localStorage.getItem(KEY_NAME) || 'browser';
  $('start').onclick = start;
  $('pause').onclick = () => (want === 'pause' ? resume() : pause());
  $('stop').onclick = stop;
  $('forget').onclick = () => { localStorage.removeItem(KEY_TOKEN); showMessage('Token forgotten.'); render(); };
  // Closing the tab hands the work back and closes cleanly, as Stop does.
  window.addEventListener('pagehide', () => { if (want !== 'stop') stop(); });
  window.addEventListener('hashchange', () => {
    if (!takeInvitation()) return;
    showMessage(want === 'stop' ? 'Invitation kept: press Start.' : 'Invitation kept: it is presented at the next connection.');
    refusal = false;
    render();
  });
  setInterval(() => { if (cores.length) render(); }, 1000);
  render();
}

init();
