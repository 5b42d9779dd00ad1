// The Anthill dashboard: one page, hash-routed, fed by the master's live
// WebSocket. Everything shown is built with textContent, never innerHTML:
// task errors, names and payloads come from volunteers' machines.
'use strict';

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const KEEP = 600; // seconds of series kept for the charts
const CHART_SPAN = 300; // seconds the charts show

const live = {
  summary: null, slaves: [], apps: [], info: null,
  series: {}, // name -> [{t, v}], oldest first
  connected: false,
};

// ---- small DOM helpers ----

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    // CSSOM, not the attribute: the CSP forbids inline style attributes.
    else if (k === 'style') el.style.cssText = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const fmtInt = (n) => Number(n).toLocaleString('en-US');
const plural = (n, word) => fmtInt(n) + ' ' + word + (n === 1 ? '' : 's');
function fmtRate(r) {
  if (!r) return '0';
  return r >= 100 ? fmtInt(Math.round(r)) : r.toFixed(r >= 10 ? 1 : 2);
}
function fmtDuration(s) {
  if (s === null || s === undefined) return '—';
  if (s > 0 && s < 0.0005) return '<1 ms';
  if (s < 1) return Math.round(s * 1000) + ' ms';
  if (s < 90) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}
function fmtAgo(ms) {
  if (!ms) return '—';
  const s = (Date.now() - ms) / 1000;
  if (s < 5) return 'now';
  return fmtDuration(s) + ' ago';
}
function fmtTime(t) {
  return t ? new Date(t).toLocaleString() : '—';
}
// Times arrive as RFC 3339 strings, or null when not reached.
function toMs(t) {
  return t ? Date.parse(t) : 0;
}
function stateBadge(s) {
  return h('span', { class: 'state ' + s }, s);
}

function toast(msg) {
  let t = document.getElementById('toast');
  if (!t) { t = h('div', { id: 'toast', class: 'toast' }); document.body.append(t); }
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 3000);
}

// ---- calls ----

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin' });
  if (r.status === 401) { location.href = '/login'; throw new Error('logged out'); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify(body),
  });
  if (r.status === 401) { location.href = '/login'; throw new Error('logged out'); }
  const out = await r.json();
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}

// ---- live feed ----

let backoff = 500;
function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(proto + '//' + location.host + '/ui/live');
  ws.onopen = () => { backoff = 500; };
  ws.onmessage = (ev) => { setConnected(true); apply(JSON.parse(ev.data)); };
  ws.onclose = async () => {
    setConnected(false);
    // The handshake hides its status; ask whether the session still holds
    // before trying again, so a revoked login lands on the login page.
    try {
      const r = await fetch('/ui/session', { credentials: 'same-origin' });
      if (r.status === 401) { location.href = '/login'; return; }
    } catch (e) { /* the master is down: keep trying */ }
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

function setConnected(on) {
  live.connected = on;
  const el = document.getElementById('conn');
  el.className = 'pill ' + (on ? 'on' : 'off');
  el.textContent = on ? 'live' : 'reconnecting…';
}

function apply(u) {
  if (u.info) {
    // A new master process starts new series: drop the old ones.
    if (!live.info || live.info.started_at !== u.info.started_at) live.series = {};
    live.info = u.info;
  }
  for (const [name, pts] of Object.entries(u.series || {})) {
    const s = live.series[name] || (live.series[name] = []);
    for (const p of pts) if (!s.length || p.t > s[s.length - 1].t) s.push(p);
    if (s.length > KEEP) s.splice(0, s.length - KEEP);
  }
  live.summary = u.summary;
  live.slaves = u.slaves || [];
  applySparks(live.slaves, u.full);
  live.apps = u.apps || [];
  if (page.update) page.update();
}

// Sparklines come whole ("recent") in a full update and for a new or
// reset line, else as the seconds closed since the previous update
// ("spark"), or not at all when unchanged: the feed no longer repeats a
// minute of numbers for every slave every second.
const sparks = new Map(); // slave name -> its last minute, oldest first
function applySparks(rows, full) {
  if (full) sparks.clear();
  const seen = new Set();
  for (const s of rows) {
    let line = sparks.get(s.name) || [];
    if (s.recent) line = s.recent;
    else if (s.spark) line = line.slice(s.spark.length).concat(s.spark);
    sparks.set(s.name, line);
    s.recent = line;
    delete s.spark;
    seen.add(s.name);
  }
  for (const name of sparks.keys()) if (!seen.has(name)) sparks.delete(name);
}

// ---- charts ----

// lineChart draws series over the last CHART_SPAN seconds on a canvas
// sized to its box, with the y axis from 0 to a rounded maximum.
function lineChart(canvas, lines, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, ht = canvas.clientHeight;
  if (!w || !ht) return;
  canvas.width = w * dpr; canvas.height = ht * dpr;
  const c = canvas.getContext('2d');
  c.scale(dpr, dpr);
  c.clearRect(0, 0, w, ht);
  let tMax = 0, tFirst = Infinity;
  for (const l of lines) {
    if (!l.points.length) continue;
    tMax = Math.max(tMax, l.points[l.points.length - 1].t);
    tFirst = Math.min(tFirst, l.points[0].t);
  }
  if (!tMax) tMax = Math.floor(Date.now() / 1000);
  // A young master's history fills the chart rather than a corner of it.
  const span = Math.min(CHART_SPAN, Math.max(60, tMax - tFirst));
  const tMin = tMax - span;
  let vMax = 0;
  for (const l of lines) for (const p of l.points) if (p.t >= tMin) vMax = Math.max(vMax, p.v * (l.scale || 1));
  vMax = niceMax(vMax);
  const left = 52, right = 8, top = 8, bottom = 20;
  const x = (t) => left + (t - tMin) / span * (w - left - right);
  const y = (v) => top + (1 - v / vMax) * (ht - top - bottom);
  c.strokeStyle = '#e3e6ec'; c.fillStyle = '#6b7385'; c.font = '11px system-ui, sans-serif';
  c.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = vMax * i / 4, yy = Math.round(y(v)) + 0.5;
    c.beginPath(); c.moveTo(left, yy); c.lineTo(w - right, yy); c.stroke();
    c.textAlign = 'right'; c.fillText(shortNum(v) + unit, left - 6, yy + 4);
  }
  c.textAlign = 'left'; c.fillText('-' + fmtDuration(span), left, ht - 4);
  c.textAlign = 'right'; c.fillText('now', w - right, ht - 4);
  c.lineWidth = 1.8;
  for (const l of lines) {
    c.strokeStyle = l.color; c.beginPath();
    let started = false;
    for (const p of l.points) {
      if (p.t < tMin) continue;
      const px = x(p.t), py = y(p.v * (l.scale || 1));
      if (started) c.lineTo(px, py); else { c.moveTo(px, py); started = true; }
    }
    c.stroke();
  }
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function shortNum(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + 'k';
  return v % 1 ? v.toFixed(1) : String(v);
}

function sparkline(values) {
  const c = h('canvas', { class: 'spark', width: 120, height: 24 });
  const ctx = c.getContext('2d');
  const vs = values || [];
  const max = Math.max(1, ...vs);
  ctx.strokeStyle = '#1c7ed6'; ctx.fillStyle = 'rgba(28,126,214,.12)'; ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.moveTo(0, 24);
  vs.forEach((v, i) => ctx.lineTo(i * 120 / Math.max(1, vs.length - 1), 23 - v / max * 21));
  ctx.lineTo(120, 24); ctx.fill();
  ctx.beginPath();
  vs.forEach((v, i) => {
    const px = i * 120 / Math.max(1, vs.length - 1), py = 23 - v / max * 21;
    if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py);
  });
  ctx.stroke();
  return c;
}

// ---- pages ----

let page = {};
const main = () => document.getElementById('main');

function card(id, label, cls) {
  return h('div', { class: 'card ' + (cls || '') },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value', id, 'data-value': '' }, '…'),
    h('div', { class: 'sub', id: id + '-sub' }));
}

function setStat(id, value, text, sub) {
  const el = document.getElementById(id);
  if (!el) return;
  el.dataset.value = String(value);
  el.textContent = text === undefined ? fmtInt(value) : text;
  if (sub !== undefined) document.getElementById(id + '-sub').textContent = sub;
}

function overviewPage() {
  const tput = h('canvas', { class: 'chart', id: 'chart-throughput' });
  const lat = h('canvas', { class: 'chart', id: 'chart-latency' });
  const kinds = h('tbody', { id: 'kinds' });
  main().replaceChildren(
    h('h2', {}, 'Overview'),
    h('div', { class: 'cards' },
      card('ov-slaves', 'Slaves online'),
      card('ov-pending', 'Pending', 'pending'),
      card('ov-running', 'Running', 'running'),
      card('ov-done', 'Done', 'done'),
      card('ov-failed', 'Failed', 'failed'),
      card('ov-canceled', 'Canceled'),
      card('ov-submitted', 'Submitted'),
      card('ov-failed-minute', 'Failed, last min', 'failed'),
      card('ov-store', 'Store commits')),
    h('div', { class: 'charts' },
      h('div', { class: 'panel' }, h('h3', {}, 'Throughput, tasks per second'), tput,
        legend([['done', '#2f9e44'], ['failed', '#d6336c'], ['submitted', '#adb5bd']])),
      h('div', { class: 'panel' }, h('h3', {}, 'Latency, submit to result'), lat,
        legend([['mean', '#1c7ed6'], ['p99', '#f08c00']]))),
    h('div', { class: 'panel' }, h('h3', {}, 'Queues by kind'),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Kind'), h('th', { class: 'num' }, 'Pending'),
        h('th', { class: 'num' }, 'Slaves that run it'))), kinds)));
  page.update = () => {
    const s = live.summary;
    if (!s) return;
    setStat('ov-slaves', s.slaves.connected, undefined, fmtInt(s.slaves.running) + ' of ' + fmtInt(s.slaves.concurrency) + ' slots busy');
    setStat('ov-pending', s.tasks.pending);
    setStat('ov-running', s.tasks.running);
    setStat('ov-done', s.tasks.done);
    setStat('ov-failed', s.tasks.failed, undefined, plural(s.tasks.retried, 'attempt') + ' retried');
    setStat('ov-canceled', s.tasks.canceled);
    setStat('ov-submitted', s.tasks.submitted, undefined, 'up ' + fmtDuration(s.uptime_ms / 1000));
    setStat('ov-failed-minute', s.throughput.failed);
    const st = s.store;
    setStat('ov-store', st.commits, undefined, st.commits ?
      (st.ops / st.commits).toFixed(1) + ' changes each · ' + st.mean_commit_ms.toFixed(2) + ' ms mean' : 'none yet');
    const ser = (n) => live.series[n] || [];
    lineChart(tput, [
      { points: ser('submitted'), color: '#adb5bd' },
      { points: ser('failed'), color: '#d6336c' },
      { points: ser('done'), color: '#2f9e44' }], '');
    lineChart(lat, [
      { points: ser('latency_mean'), color: '#1c7ed6', scale: 1000 },
      { points: ser('latency_p99'), color: '#f08c00', scale: 1000 }], ' ms');
    kinds.replaceChildren(...(s.kinds.length ? s.kinds.map((k) => h('tr', {},
      h('td', {}, k.kind), h('td', { class: 'num' }, fmtInt(k.pending)),
      h('td', { class: 'num ' + (k.pending && !k.slaves ? 'warn' : '') },
        k.pending && !k.slaves ? '0 — waiting for a volunteer' : fmtInt(k.slaves)))) :
      [h('tr', {}, h('td', { colspan: 3, class: 'empty' }, 'No tasks submitted yet.'))]));
  };
  page.update();
}

function legend(items) {
  return h('div', { class: 'legend' }, items.map(([n, c]) => h('span', {}, h('i', { style: 'background:' + c }), n)));
}

const slaveCols = [
  ['name', 'Name'], ['host', 'Host'], ['platform', 'Platform'], ['cores', 'Cores', 1],
  ['running', 'Running', 1], ['done', 'Done', 1], ['failed', 'Failed', 1],
  ['throughput', 'Tasks/s', 1], ['mean_task_ms', 'Mean task', 1], ['busy_fraction', 'Busy', 1], ['last_seen', 'Last seen', 1],
];
let slaveSort = { key: 'name', asc: true };

function slavesPage() {
  const body = h('tbody', { id: 'slaves' });
  const head = h('tr', {});
  const drawHead = () => head.replaceChildren(...slaveCols.map(([k, label, num]) => h('th', {
    class: 'sortable ' + (num ? 'num ' : '') + (slaveSort.key === k ? 'sorted ' + (slaveSort.asc ? 'asc' : '') : ''),
    'data-sort': k,
    onclick: () => {
      slaveSort = { key: k, asc: slaveSort.key === k ? !slaveSort.asc : !num };
      drawHead(); page.update();
    },
  }, label)), h('th', {}, 'Last minute'), h('th', {}, ''));
  drawHead();
  main().replaceChildren(h('h2', {}, 'Slaves'),
    h('div', { class: 'panel' }, h('table', {}, h('thead', {}, head), body)));
  page.update = () => {
    const rows = [...live.slaves].sort((a, b) => {
      const val = (r) => (slaveSort.key === 'last_seen' ? toMs(r.last_seen) : r[slaveSort.key]);
      const x = val(a), y = val(b);
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return slaveSort.asc ? c : -c;
    });
    if (!rows.length) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 13, class: 'empty' },
        'No slave has connected. Volunteers run: anthill slave --master ws://' + location.host)));
      return;
    }
    body.replaceChildren(...rows.map((s) => {
      const online = s.sessions.length > 0;
      let action;
      if (!online) action = h('span', { class: 'muted' }, 'offline');
      else if (s.draining) action = h('span', { class: 'warn' }, 'draining');
      else action = h('button', { class: 'danger', 'data-drain': s.name, onclick: () => drain(s) }, 'Drain');
      return h('tr', { class: online ? '' : 'offline', 'data-slave': s.name },
        // The volunteer identity, then the labels its sessions chose for
        // themselves, which anyone can copy and so never stand alone.
        h('td', {}, s.name,
          (s.labels || []).filter((l) => l !== s.name).length ? h('span', { class: 'muted', title: 'self-chosen names' }, ' (' + s.labels.filter((l) => l !== s.name).join(', ') + ')') : null,
          s.reconnects ? h('span', { class: 'muted', title: 'reconnections' }, ' ↻' + s.reconnects) : null),
        h('td', {}, s.host || '—'), h('td', {}, s.platform || '—'),
        h('td', { class: 'num' }, s.cores || '—'),
        h('td', { class: 'num' }, fmtInt(s.running) + ' / ' + fmtInt(s.slots)),
        h('td', { class: 'num', 'data-col': 'done' }, fmtInt(s.done)),
        h('td', { class: 'num', 'data-col': 'failed' }, fmtInt(s.failed)),
        h('td', { class: 'num' }, fmtRate(s.throughput)),
        h('td', { class: 'num' }, s.done + s.failed ? fmtDuration(s.mean_task_ms / 1000) : '—'),
        h('td', { class: 'num' }, Math.round(s.busy_fraction * 100) + '%'),
        h('td', { class: 'num' }, online ? 'now' : fmtAgo(toMs(s.last_seen))),
        h('td', {}, sparkline(s.recent)), h('td', {}, action));
    }));
  };
  page.update();
}

async function drain(s) {
  if (!confirm('Drain ' + s.name + '? It finishes what it runs and gets no more tasks.')) return;
  try {
    await post('/ui/drain', { sessions: s.sessions });
    toast(s.name + ' is draining');
  } catch (e) { toast('Drain failed: ' + e.message); }
}

const states = ['', 'pending', 'running', 'done', 'failed', 'canceled'];

function tasksPage(params) {
  const f = { state: params.get('state') || '', app: params.get('app') || '', kind: params.get('kind') || '', order: params.get('order') || '' };
  const cursors = [params.get('cursor') || ''];
  const body = h('tbody', { id: 'tasks' });
  const info = h('span', { class: 'muted', id: 'tasks-info' });
  const prev = h('button', { id: 'tasks-prev', onclick: () => { cursors.pop(); load(); } }, '← Previous');
  const next = h('button', { id: 'tasks-next', onclick: () => { cursors.push(next.dataset.cursor); load(); } }, 'Next →');
  const stateSel = h('select', { id: 'filter-state' }, states.map((s) => h('option', { value: s, selected: s === f.state }, s || 'any')));
  const appIn = h('input', { id: 'filter-app', list: 'app-names', value: f.app, placeholder: 'any' });
  const kindIn = h('input', { id: 'filter-kind', value: f.kind, placeholder: 'any' });
  const orderSel = h('select', { id: 'filter-order' },
    h('option', { value: '', selected: f.order !== 'asc' }, 'newest first'),
    h('option', { value: 'asc', selected: f.order === 'asc' }, 'oldest first'));
  const applyFilter = (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (stateSel.value) q.set('state', stateSel.value);
    if (appIn.value) q.set('app', appIn.value);
    if (kindIn.value) q.set('kind', kindIn.value);
    if (orderSel.value) q.set('order', orderSel.value);
    location.hash = '#/tasks' + (q.toString() ? '?' + q : '');
  };
  main().replaceChildren(h('h2', {}, 'Tasks'),
    h('form', { class: 'filters', onsubmit: applyFilter },
      h('label', {}, 'State', stateSel), h('label', {}, 'Application', appIn),
      h('datalist', { id: 'app-names' }, live.apps.map((a) => h('option', { value: a.name }))),
      h('label', {}, 'Kind', kindIn), h('label', {}, 'Order', orderSel),
      h('button', { type: 'submit', id: 'filter-apply' }, 'Filter'),
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    h('div', { class: 'panel' },
      h('table', {}, h('thead', {}, h('tr', {}, ['ID', 'App', 'Kind', 'State', 'Attempts', 'Slave', 'Created', 'Took', 'Error']
        .map((c) => h('th', {}, c)))), body),
      h('div', { class: 'pager' }, prev, next, info)));

  async function load() {
    const q = new URLSearchParams({ limit: 50 });
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set('cursor', cursor);
    let pg;
    try { pg = await getJSON('/ui/tasks?' + q); } catch (e) { info.textContent = e.message; return; }
    body.replaceChildren(...(pg.tasks.length ? pg.tasks.map((t) => h('tr', {
      class: 'clickable', 'data-task': t.id, onclick: () => { location.hash = '#/task/' + t.id; },
    },
    h('td', { class: 'mono' }, t.id), h('td', {}, t.app), h('td', {}, t.kind), h('td', {}, stateBadge(t.state)),
    h('td', { class: 'num' }, t.attempts + ' / ' + t.max_attempts), h('td', {}, t.slave || '—'),
    h('td', {}, fmtTime(t.created_at)),
    h('td', { class: 'num' }, t.finished_at && t.started_at ? fmtDuration((toMs(t.finished_at) - toMs(t.started_at)) / 1000) : '—'),
    h('td', { class: 'err' }, t.error || ''))) :
      [h('tr', {}, h('td', { colspan: 9, class: 'empty' }, pg.next_cursor ? 'No match in this stretch of the store; try Next.' : 'No tasks match.'))]));
    prev.disabled = cursors.length <= 1;
    next.disabled = !pg.next_cursor;
    next.dataset.cursor = pg.next_cursor || '';
    info.textContent = 'page ' + cursors.length + (pg.tasks.length ? ' · ids ' + pg.tasks[0].id + ' – ' + pg.tasks[pg.tasks.length - 1].id : '');
  }
  page.update = null;
  load();
}

function taskPage(id) {
  const box = h('div', { id: 'task-detail' }, h('div', { class: 'empty' }, 'Loading…'));
  main().replaceChildren(h('h2', {}, h('a', { href: '#/tasks' }, 'Tasks'), ' / ', id), box);
  let last = null;
  async function load() {
    let t;
    try { t = await getJSON('/ui/task?id=' + encodeURIComponent(id)); } catch (e) {
      box.replaceChildren(h('div', { class: 'panel err' }, e.message)); return;
    }
    const key = JSON.stringify(t);
    if (key === last) return;
    last = key;
    const act = async (what) => {
      try { await post('/ui/' + what, { id: t.id }); toast('Task ' + t.id + ': ' + what + ' done'); last = null; load(); } catch (e) { toast(e.message); }
    };
    const active = t.state === 'pending' || t.state === 'running';
    // replaceChildren would print a null as the text "null".
    box.replaceChildren(...[
      h('div', { class: 'panel' },
        h('dl', { class: 'fields' },
          h('dt', {}, 'State'), h('dd', { id: 'task-state' }, stateBadge(t.state)),
          h('dt', {}, 'Application'), h('dd', {}, t.app), h('dt', {}, 'Kind'), h('dd', {}, t.kind),
          t.module ? [h('dt', {}, 'Module'), h('dd', { class: 'mono', id: 'task-module' }, t.module)] : null,
          t.key ? [h('dt', {}, 'Key'), h('dd', {}, t.key)] : null,
          h('dt', {}, 'Attempts'), h('dd', {}, t.attempts + ' of ' + t.max_attempts),
          h('dt', {}, 'Priority'), h('dd', {}, t.priority),
          h('dt', {}, 'Timeout'), h('dd', {}, fmtDuration(t.timeout_ms / 1000)),
          h('dt', {}, 'Slave'), h('dd', {}, attribution(t.slave, t.session)),
          h('dt', {}, 'Created'), h('dd', {}, fmtTime(t.created_at)),
          h('dt', {}, 'Started'), h('dd', {}, fmtTime(t.started_at)),
          h('dt', {}, 'Finished'), h('dd', {}, fmtTime(t.finished_at)),
          t.finished_at ? [h('dt', {}, 'Submit to final'), h('dd', {}, fmtDuration((toMs(t.finished_at) - toMs(t.created_at)) / 1000))] : null),
        h('div', { class: 'actions' },
          h('button', { id: 'task-cancel', class: 'danger', disabled: !active, onclick: () => act('cancel') }, 'Cancel'),
          h('button', { id: 'task-retry', disabled: !(t.state === 'failed' || t.state === 'canceled'), onclick: () => act('retry') }, 'Retry'))),
      t.error ? h('div', { class: 'panel' }, h('h3', {}, 'Error'), h('pre', { class: 'preview err', id: 'task-error' }, t.error)) : null,
      t.copies ? h('div', { class: 'panel' }, h('h3', {}, 'Copies (' + t.replicas + ', quorum ' + t.quorum + ')'), copies(t.copies)) : null,
      // A replicated task's runs are its copies.
      t.copies ? null : h('div', { class: 'panel' }, h('h3', {}, 'Attempts'), history(t.history)),
      h('div', { class: 'panel' }, h('h3', {}, 'Result'), previewBox(t.result, 'task-result')),
      h('div', { class: 'panel' }, h('h3', {}, 'Payload'), previewBox(t.payload, 'task-payload'))].filter((el) => el));
  }
  load();
  page.update = () => { if (last && /"state":"(pending|running)"/.test(last)) load(); };
}

// attribution names who ran an attempt: the volunteer identity and its
// session.
function attribution(identity, session) {
  if (!identity) return '—';
  return session ? identity + ' (session ' + session + ')' : identity;
}

function history(hs) {
  if (!hs || !hs.length) return h('div', { class: 'muted' }, 'Not run yet.');
  return h('table', { id: 'task-history' },
    h('thead', {}, h('tr', {}, ['#', 'Slave', 'Started', 'Took', 'Outcome', 'Error'].map((c) => h('th', {}, c)))),
    h('tbody', {}, hs.map((a, i) => h('tr', {},
      h('td', {}, i + 1), h('td', {}, attribution(a.slave, a.session)), h('td', {}, fmtTime(a.started_at)),
      h('td', { class: 'num' }, a.ended_at ? fmtDuration((toMs(a.ended_at) - toMs(a.started_at)) / 1000) : 'running'),
      h('td', {}, stateBadge(a.outcome)), h('td', { class: 'err' }, a.error || '')))));
}

// copies lists a replicated task's copies: who ran each, and what the
// quorum made of it.
function copies(cs) {
  return h('table', { id: 'task-copies' },
    h('thead', {}, h('tr', {}, ['#', 'Volunteer', 'Started', 'Took', 'Outcome', 'Error'].map((c) => h('th', {}, c)))),
    h('tbody', {}, cs.map((c, i) => h('tr', { 'data-copy': c.slave || '' },
      h('td', {}, i + 1), h('td', {}, attribution(c.slave, c.session)), h('td', {}, fmtTime(c.started_at)),
      h('td', { class: 'num' }, c.ended_at && c.started_at ? fmtDuration((toMs(c.ended_at) - toMs(c.started_at)) / 1000) : '—'),
      h('td', {}, stateBadge(c.outcome)), h('td', { class: 'err' }, c.error || '')))));
}

function previewBox(p, id) {
  if (!p || !p.bytes) return h('div', { class: 'muted', id }, 'empty');
  const text = p.text !== undefined && p.text !== '' ? p.text : p.hex.replace(/(..)/g, '$1 ').trim();
  return h('div', {},
    h('div', { class: 'muted' }, fmtInt(p.bytes) + ' bytes' + (p.hex ? ', binary (hex)' : '') + (p.truncated ? ', first part shown' : '')),
    h('pre', { class: 'preview', id }, text));
}

function appsPage() {
  const list = h('div', { id: 'apps' });
  main().replaceChildren(h('h2', {}, 'Applications'), h('div', { class: 'panel' }, list));
  page.update = () => {
    if (!live.apps.length) {
      list.replaceChildren(h('div', { class: 'empty' }, 'No application has pushed tasks yet.'));
      return;
    }
    list.replaceChildren(...live.apps.map((a) => {
      // failed counts canceled tasks too, as in Apps.List.
      const fin = a.done + a.failed, failed = a.failed - a.canceled;
      const total = Math.max(a.pushed, fin + a.unfinished, 1);
      const pct = (n) => (100 * n / total).toFixed(2) + '%';
      return h('div', { class: 'app', 'data-app': a.name },
        h('div', { class: 'name' }, h('span', { class: 'dot ' + (a.connected ? 'on' : ''), title: a.connected ? 'connected' : 'not connected' }), a.name),
        h('div', {},
          h('div', { class: 'bar', role: 'progressbar', 'aria-valuenow': fin, 'aria-valuemax': a.pushed },
            h('span', { class: 'done', style: 'width:' + pct(a.done) }),
            h('span', { class: 'failed', style: 'width:' + pct(failed) }),
            h('span', { class: 'canceled', style: 'width:' + pct(a.canceled) })),
          h('div', { class: 'muted' }, fmtInt(fin) + ' / ' + fmtInt(a.pushed) + ' finished · ' +
            fmtInt(a.done) + ' done, ' + fmtInt(failed) + ' failed, ' + fmtInt(a.canceled) + ' canceled')),
        h('div', {},
          h('div', {}, fmtRate(a.throughput) + ' tasks/s · ETA ' + (a.unfinished ? fmtDuration(a.eta_s) : 'done')),
          h('div', { class: 'muted' }, fmtInt(a.unfinished) + ' in flight · mean latency ' + fmtDuration(a.mean_latency_ms / 1000))));
    }));
  };
  page.update();
}

// volunteersPage shows what each volunteer has shown: results the
// quorums judged, trust per app, credit. It polls: the records change
// with every verdict, not with the live feed.
function volunteersPage() {
  const body = h('tbody', { id: 'volunteers' });
  main().replaceChildren(h('h2', {}, 'Volunteers'),
    h('div', { class: 'panel' },
      h('p', { class: 'muted' }, 'Results of replicated and adaptive apps, judged by quorums and spot checks (docs/TRUST.md). ',
        h('a', { href: '/leaderboard', target: '_blank' }, 'Public leaderboard')),
      h('table', {}, h('thead', {}, h('tr', {}, ['Volunteer', 'Valid', 'Invalid', 'Trust', 'Credit', 'Apps', 'Listed']
        .map((c) => h('th', { class: ['Valid', 'Invalid', 'Credit'].includes(c) ? 'num' : '' }, c)))), body)));
  let last = 0, busy = false;
  async function load() {
    if (busy || Date.now() - last < 2000) return;
    busy = true;
    let out;
    try { out = await getJSON('/ui/volunteers'); } catch (e) { busy = false; return; } finally { last = Date.now(); }
    busy = false;
    if (!out.volunteers.length) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No volunteer has results judged yet: apps that ask for replicas have them.')));
      return;
    }
    body.replaceChildren(...out.volunteers.map((v) => {
      const suspect = v.apps.some((a) => a.suspect);
      const trust = v.trusted ? h('span', { class: 'state done' }, 'trusted') :
        suspect ? h('span', { class: 'state failed' }, 'suspect') : h('span', { class: 'state pending' }, 'earning');
      return h('tr', { 'data-volunteer': v.name, 'data-trust': v.trusted ? 'trusted' : suspect ? 'suspect' : 'earning' },
        h('td', {}, v.name),
        h('td', { class: 'num', 'data-col': 'valid' }, fmtInt(v.valid_results)),
        h('td', { class: 'num', 'data-col': 'invalid' }, fmtInt(v.invalid_results)),
        h('td', {}, trust),
        h('td', { class: 'num' }, fmtDuration(v.credit)),
        h('td', {}, v.apps.map((a) => h('div', { class: 'muted' }, a.app + ': streak ' + fmtInt(a.streak) + ' of ' + fmtInt(a.need) +
          (a.pending_credit ? ', ' + fmtDuration(a.pending_credit) + ' pending' : '')))),
        h('td', {}, v.leaderboard ? 'yes' : '—'));
    }));
  }
  page.update = load;
  load();
}

// ---- routing ----

function route() {
  const hash = location.hash.replace(/^#\/?/, '') || 'overview';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/');
  page = {};
  let name = parts[0];
  if (name === 'task' && parts[1]) { taskPage(parts[1]); name = 'tasks'; }
  else if (name === 'slaves') slavesPage();
  else if (name === 'tasks') tasksPage(params);
  else if (name === 'apps') appsPage();
  else if (name === 'volunteers') volunteersPage();
  else { name = 'overview'; overviewPage(); }
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === name));
  document.body.dataset.page = name;
}

window.addEventListener('hashchange', route);
window.addEventListener('resize', () => { if (page.update) page.update(); });
document.getElementById('logout').addEventListener('click', async () => {
  try { await post('/logout', {}); } finally { location.href = '/login'; }
});
route();
connect();
