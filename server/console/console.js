/* evlog web console.  It speaks the public HTTP API only (docs/http.md), with
 * the bearer token the user gives it, kept in sessionStorage (this tab only).
 *
 * Everything the server sends reaches the DOM as text nodes, through el():
 * there is no innerHTML here, so event data (written by anyone holding a
 * writer token) can never become markup.  The page's CSP backs that up.
 *
 * The live feed reads /subscribe with fetch() rather than EventSource: fetch
 * can send the Authorization header (EventSource cannot, so the token would
 * have to go in the URL), and frames are named by event type, which
 * EventSource only delivers to listeners registered per type. */
'use strict';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'evlog.token';
const FEED_MAX = 200;    /* rows kept in the feed */
const FEED_BACKLOG = 30; /* events shown from before the page opened */
const PAGE = 20;         /* events per page in the stream browser */
const MAX_ROWS = 1000;   /* rows a console query asks for */

/* ------------------------------------------------------------ helpers */

/* An element with attributes and children; strings become text nodes. */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
const short = (v) => clip(JSON.stringify(v === undefined ? null : v), 160);
const clock = (t) => (typeof t === 'string' ? t.slice(11, 23) : '');
const enc = encodeURIComponent;
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

function delay(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/* One banner for what concerns the whole page (no token, server gone);
 * each kind clears only itself. */
let bannerKind = null;
function showBanner(kind, msg) {
  bannerKind = kind;
  $('banner').textContent = msg;
  $('banner').hidden = false;
}
function clearBanner(kind) {
  if (bannerKind !== kind) return;
  bannerKind = null;
  $('banner').hidden = true;
}

class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

/* fetch() with the token; a non-2xx answer throws its problem detail. */
async function api(path, { method = 'GET', json, signal } = {}) {
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body, signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'cannot reach evlogd (' + e.message + ')');
  }
  if (r.ok) return r;
  let detail = r.status + ' ' + r.statusText;
  try {
    const p = await r.json();
    if (p && p.detail) detail = p.detail + ' (' + r.status + ')';
  } catch (_) { /* not problem+json: keep the status line */ }
  if (r.status === 401)
    showBanner('auth', 'This server needs a bearer token: enter it above (it is kept in this tab only). ' + detail);
  throw new ApiError(r.status, detail);
}

/* ------------------------------------------------- head and append rate */

const samples = []; /* {t, n}: appended-events counter over the last 5 s */

async function pollStats() {
  try {
    const text = await (await api('/metrics')).text();
    const m = {};
    for (const line of text.split('\n')) {
      const x = /^(evlog_head_position|evlog_appended_events_total) (\S+)$/.exec(line);
      if (x) m[x[1]] = Number(x[2]);
    }
    if (m.evlog_head_position === undefined) throw new ApiError(0, '/metrics has no evlog_head_position');
    $('head').textContent = String(m.evlog_head_position);
    const now = performance.now();
    samples.push({ t: now, n: m.evlog_appended_events_total });
    while (samples.length > 2 && now - samples[0].t > 5000) samples.shift();
    if (samples.length > 1) {
      const a = samples[0], b = samples[samples.length - 1];
      const rate = Math.max(0, (b.n - a.n) / ((b.t - a.t) / 1000));
      $('rate').textContent = rate < 10 ? rate.toFixed(1) : String(Math.round(rate));
    }
    clearBanner('net');
    clearBanner('auth');
  } catch (e) {
    if (e.status !== 401) showBanner('net', 'head and rate: ' + e.message);
  }
  setTimeout(pollStats, 1000);
}

/* ------------------------------------------------------------ live feed */

const feed = { ctl: null, next: 1, paused: false, type: '', category: '' };
const seen = new Set(); /* stream names met in the feed, for the stream search */

function feedParams(extra) {
  const p = new URLSearchParams(extra);
  if (feed.type) p.set('type', feed.type);
  if (feed.category) p.set('category', feed.category);
  return p.toString();
}

function setFeedState(s) {
  $('feed-state').textContent = s;
  $('conn').className = 'stat ' + (s === 'live' ? 'live' : s === 'paused' ? '' : 'down');
}

function addFeedRow(ev) {
  const tr = el('tr', { 'data-position': ev.position, onclick: () => showEvent(ev, tr) },
    el('td', { class: 'num' }, ev.position),
    el('td', {}, clock(ev.time)),
    el('td', {}, el('button', { type: 'button', class: 'link', title: ev.subject,
      onclick: (e) => { e.stopPropagation(); openStream(ev.subject); } }, ev.subject)),
    el('td', { title: ev.type }, ev.type),
    el('td', { title: short(ev.data) }, short(ev.data)));
  const body = $('feed').tBodies[0];
  body.prepend(tr);
  while (body.rows.length > FEED_MAX) body.lastElementChild.remove();
  if (!seen.has(ev.subject) && seen.size < 1000) {
    seen.add(ev.subject);
    $('s-seen').append(el('option', { value: ev.subject }));
  }
}

/* Read SSE frames from a streamed body; onData gets each frame's data. */
async function readSse(body, onData) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = frame.split('\n').filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(l[5] === ' ' ? 6 : 5));
      if (data.length) onData(data.join('\n'));
    }
  }
}

/* Follow the log from feed.next until aborted; reconnect (from the last
 * position received, so nothing is lost or repeated) when the server ends
 * the response or the connection drops. */
async function feedFollow(ctl) {
  while (!ctl.signal.aborted) {
    setFeedState('connecting');
    try {
      const r = await api('/subscribe?' + feedParams({ from: String(feed.next) }), { signal: ctl.signal });
      setFeedState('live');
      $('f-error').textContent = '';
      await readSse(r.body, (data) => {
        const ev = JSON.parse(data);
        feed.next = ev.position + 1;
        addFeedRow(ev);
      });
    } catch (e) {
      if (ctl.signal.aborted) return;
      $('f-error').textContent = 'feed: ' + e.message;
      if (e.status >= 400 && e.status < 500) { setFeedState('stopped'); return; }
    }
    setFeedState('reconnecting');
    await delay(2000, ctl.signal);
  }
}

function feedStop() {
  if (feed.ctl) feed.ctl.abort();
  feed.ctl = null;
}

/* (Re)start with the current filters: the last few matching events, then
 * live from the head that page was read at. */
async function feedStart() {
  feedStop();
  const ctl = (feed.ctl = new AbortController());
  feed.paused = false;
  $('f-pause').textContent = 'Pause';
  $('f-info').textContent = '';
  $('feed').tBodies[0].replaceChildren();
  try {
    setFeedState('connecting');
    const r = await api('/events?' + feedParams({ backward: '1', limit: String(FEED_BACKLOG) }), { signal: ctl.signal });
    const page = await r.json();
    for (const ev of page.events.slice().reverse()) addFeedRow(ev);
    feed.next = page.head + 1;
  } catch (e) {
    if (ctl.signal.aborted) return;
    $('f-error').textContent = 'feed: ' + e.message;
    setFeedState('stopped');
    return;
  }
  feedFollow(ctl);
}

/* Pausing closes the subscription; resuming subscribes again from the last
 * position shown, and the server catches up what came in between. */
function feedPause() {
  if (!feed.paused) {
    feedStop();
    feed.paused = true;
    setFeedState('paused');
    $('f-pause').textContent = 'Resume';
    $('f-info').textContent = 'paused after position ' + (feed.next - 1) + '; resuming catches up';
  } else {
    feed.paused = false;
    $('f-pause').textContent = 'Pause';
    $('f-info').textContent = '';
    feed.ctl = new AbortController();
    feedFollow(feed.ctl);
  }
}

/* ------------------------------------------------------- stream browser */

const sb = { name: '', from: null, back: [], next: null };

function showEvent(ev, tr) {
  for (const r of document.querySelectorAll('tr.selected')) r.classList.remove('selected');
  if (tr) tr.classList.add('selected');
  $('e-title').textContent = 'position ' + ev.position + ' · ' + ev.subject + ' revision ' + ev.revision;
  $('e-json').textContent = JSON.stringify(ev, null, 2);
}

function openStream(name) {
  $('s-name').value = name;
  sb.name = name;
  sb.back = [];
  loadPage(null);
  $('stream-panel').scrollIntoView({ block: 'nearest' });
}

async function loadPage(from) {
  const p = new URLSearchParams({ limit: String(PAGE) });
  if (from !== null) p.set('from', String(from));
  if ($('s-backward').checked) p.set('backward', '1');
  const body = $('s-events').tBodies[0];
  $('s-error').textContent = '';
  $('s-matches').replaceChildren();
  try {
    const page = await (await api('/streams/' + enc(sb.name) + '?' + p)).json();
    sb.from = from;
    sb.next = page.next_from;
    body.replaceChildren(...page.events.map((ev) => {
      const tr = el('tr', { onclick: () => showEvent(ev, tr) },
        el('td', { class: 'num' }, ev.revision), el('td', { class: 'num' }, ev.position),
        el('td', {}, clock(ev.time)), el('td', {}, ev.type), el('td', { title: short(ev.data) }, short(ev.data)));
      return tr;
    }));
    const revs = page.events.map((ev) => ev.revision);
    $('s-page').textContent = sb.name + ': revisions ' + Math.min(...revs) + '–' + Math.max(...revs);
  } catch (e) {
    body.replaceChildren();
    sb.next = null;
    $('s-page').textContent = '';
    if (e.status === 404) searchStreams(sb.name);
    else $('s-error').textContent = 'stream: ' + e.message;
  }
  $('s-prev').disabled = sb.back.length === 0;
  $('s-next').disabled = sb.next === null || sb.next === undefined;
}

/* No stream has that exact name: list the streams whose name contains it,
 * among those the feed has shown and the recent events of its category. */
async function searchStreams(text) {
  const names = new Set([...seen].filter((s) => s.includes(text)));
  try {
    const cat = text.split('-')[0];
    const page = await (await api('/events?' + new URLSearchParams({ category: cat, backward: '1', limit: '1000' }))).json();
    for (const ev of page.events) if (ev.subject.includes(text)) names.add(ev.subject);
  } catch (e) {
    if (e.status !== 400) $('s-error').textContent = 'search: ' + e.message;
  }
  const list = [...names].sort().slice(0, 50);
  if (!list.length) {
    $('s-error').textContent = 'no stream named "' + text + '", and none whose name contains it among the streams the feed ' +
      'has shown and the last 1000 events of category "' + text.split('-')[0] + '"';
    return;
  }
  $('s-error').textContent = 'no stream named "' + text + '"; streams whose name contains it:';
  $('s-matches').replaceChildren(...list.map((s) =>
    el('li', {}, el('button', { type: 'button', class: 'link', onclick: () => openStream(s) }, s))));
}

/* ---------------------------------------------------------- projections */

const proj = { rows: new Map(), list: [], seq: 0, shown: 0, watch: new Map() };

function projRow(p) {
  let r = proj.rows.get(p.name);
  if (r) return r;
  r = {};
  r.state = el('td');
  r.checkpoint = el('td', { class: 'num' });
  r.lag = el('td', { class: 'num' });
  r.tables = el('td', { class: 'tables' });
  r.generation = el('td', { class: 'num' });
  r.note = el('span', { class: 'note' });
  r.rebuild = el('button', { type: 'button', onclick: () => rebuild(p.name) }, 'Rebuild');
  r.tr = el('tr', { 'data-projection': p.name }, el('td', {}, p.name), r.state, r.checkpoint, r.lag,
    r.tables, r.generation,
    el('td', { class: 'actions' }, el('button', { type: 'button', onclick: () => selectQuery(p.name, true) }, 'Query'), ' ', r.rebuild));
  $('projections').tBodies[0].append(r.tr);
  proj.rows.set(p.name, r);
  return r;
}

function renderProjection(p, seq) {
  const r = projRow(p);
  const kids = [el('span', { class: 'state-' + p.state }, p.state)];
  if (p.rebuild) {
    const b = p.rebuild;
    const pct = Math.floor((100 * b.position) / Math.max(1, b.head));
    kids.push(el('span', { class: 'rebuild' }, el('progress', { max: String(Math.max(1, b.head)), value: String(b.position) }),
      pct + '% · ' + b.events_per_second + ' ev/s' + (b.eta_seconds === null ? '' : ' · eta ' + b.eta_seconds + ' s')));
  }
  if (p.error) kids.push(el('span', { class: 'note bad' }, 'faulted at ' + p.fault_position + ' (' + p.fault_type + '): ' + p.error));
  const w = proj.watch.get(p.name);
  if (w && w.accepted !== null && seq > w.accepted) {
    /* a rebuild asked from here: done once a new generation serves */
    if (p.generation > w.generation) {
      r.note.className = 'note';
      r.note.textContent = 'rebuilt in ' + ((performance.now() - w.t0) / 1000).toFixed(1) + ' s (generation ' + p.generation + ')';
      proj.watch.delete(p.name);
    } else if (!p.rebuild && p.state !== 'rebuilding') {
      r.note.className = 'note bad';
      r.note.textContent = 'rebuild failed: ' + (p.rebuild_error || 'the old table still serves');
      proj.watch.delete(p.name);
    }
  } else if (!w && p.rebuild_error && !r.note.textContent) {
    r.note.className = 'note bad';
    r.note.textContent = 'last rebuild failed: ' + p.rebuild_error;
  }
  kids.push(r.note);
  r.state.replaceChildren(...kids);
  r.checkpoint.textContent = String(p.checkpoint);
  r.lag.textContent = String(p.lag);
  /* the tables with rows, then how many are empty; all of them in the title */
  const tabs = Object.entries(p.tables || {});
  const full = tabs.filter(([, n]) => n > 0).map(([t, n]) => t + ' ' + n);
  const empty = tabs.length - full.length;
  if (empty) full.push(full.length ? '+' + empty + ' empty' : empty === 1 ? 'empty' : empty + ' empty tables');
  r.tables.textContent = full.join(', ');
  r.tables.title = tabs.map(([t, n]) => t + ': ' + n + ' rows').join('\n');
  r.generation.textContent = String(p.generation);
  r.rebuild.disabled = Boolean(p.rebuild) || proj.watch.has(p.name);
}

/* Take the status and render it; seq orders it against rebuild answers. */
async function refreshProjections() {
  const seq = ++proj.seq;
  try {
    const list = await (await api('/projections')).json();
    if (seq < proj.shown) return; /* a later status is already on the page */
    proj.shown = seq;
    proj.list = list;
    for (const p of proj.list) renderProjection(p, seq);
    fillQuerySelect();
    $('proj-error').textContent = '';
  } catch (e) {
    $('proj-error').textContent = 'projections: ' + e.message;
  }
}

async function pollProjections() {
  await refreshProjections();
  /* rebuilds started elsewhere (evlog rebuild, SIGHUP) are followed closer too */
  setTimeout(pollProjections, proj.list.some((p) => p.rebuild) ? 500 : 2000);
}

async function rebuild(name) {
  const p = proj.list.find((x) => x.name === name);
  const r = proj.rows.get(name);
  const w = { generation: p ? p.generation : 0, t0: performance.now(), accepted: null };
  proj.watch.set(name, w);
  r.rebuild.disabled = true;
  r.note.className = 'note';
  r.note.textContent = 'rebuild requested…';
  try {
    await api('/projections/' + enc(name) + '/rebuild', { method: 'POST' });
    w.accepted = proj.seq; /* judge it by status taken after this answer */
    /* follow it closely, besides the 2-second poll, until it is judged */
    while (proj.watch.get(name) === w) {
      await refreshProjections();
      await delay(250);
    }
  } catch (e) {
    proj.watch.delete(name);
    r.rebuild.disabled = false;
    r.note.className = 'note bad';
    r.note.textContent = 'rebuild refused: ' + e.message;
  }
}

/* ---------------------------------------------------------------- query */

function defaultSql(name) {
  const p = proj.list.find((x) => x.name === name);
  const t = p && Object.keys(p.tables || {})[0];
  return t ? 'SELECT * FROM "' + t.replace(/"/g, '""') + '" LIMIT 50' : "SELECT name FROM sqlite_master WHERE type = 'table'";
}

function fillQuerySelect() {
  const sel = $('q-proj');
  const names = proj.list.map((p) => p.name);
  if ([...sel.options].map((o) => o.value).join('\n') === names.join('\n')) return;
  const cur = sel.value;
  sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
  if (names.includes(cur)) sel.value = cur;
  else if (names.length) selectQuery(names[0], false);
}

/* Each projection keeps its own SQL (for this tab). */
function selectQuery(name, focus) {
  const sel = $('q-proj');
  if (sel.dataset.current) sessionStorage.setItem('evlog.sql.' + sel.dataset.current, $('q-sql').value);
  sel.value = name;
  sel.dataset.current = name;
  $('q-sql').value = sessionStorage.getItem('evlog.sql.' + name) || defaultSql(name);
  if (focus) {
    $('query-panel').scrollIntoView({ block: 'nearest' });
    $('q-sql').focus();
  }
}

function cell(v) {
  if (v === null) return el('td', { class: 'null' }, 'NULL');
  const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return el('td', { class: typeof v === 'number' ? 'num' : '', title: s }, s);
}

async function runQuery() {
  const name = $('q-proj').value;
  const t0 = performance.now();
  $('q-error').textContent = '';
  $('q-info').textContent = 'running…';
  try {
    const res = await (await api('/projections/' + enc(name) + '/query',
      { method: 'POST', json: { sql: $('q-sql').value, max_rows: MAX_ROWS } })).json();
    $('q-result').replaceChildren(
      el('thead', {}, el('tr', {}, ...res.columns.map((c) => el('th', {}, c)))),
      el('tbody', {}, ...res.rows.map((row) => el('tr', {}, ...row.map(cell)))));
    $('q-info').textContent = res.rows.length + ' row' + (res.rows.length === 1 ? '' : 's') + ' · position ' + res.position +
      ' · ' + Math.round(performance.now() - t0) + ' ms' + (res.truncated ? ' · truncated at ' + MAX_ROWS : '');
  } catch (e) {
    $('q-info').textContent = '';
    $('q-error').textContent = name + ': ' + e.message;
  }
}

/* ----------------------------------------------------------------- setup */

function tokenChanged() {
  $('token').value = '';
  $('token').placeholder = token() ? 'token in use (this tab)' : 'bearer token';
  clearBanner('auth');
  feedStart();
  refreshProjections();
}

function init() {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    tokenChanged();
  });
  $('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenChanged();
  });
  $('feed-form').addEventListener('submit', (e) => {
    e.preventDefault();
    feed.type = $('f-type').value.trim();
    feed.category = $('f-category').value.trim();
    feedStart();
  });
  $('f-pause').addEventListener('click', feedPause);
  $('s-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('s-name').value.trim();
    if (name) openStream(name);
  });
  $('s-next').addEventListener('click', () => { sb.back.push(sb.from); loadPage(sb.next); });
  $('s-prev').addEventListener('click', () => loadPage(sb.back.pop()));
  $('q-proj').addEventListener('change', () => selectQuery($('q-proj').value, false));
  $('q-form').addEventListener('submit', (e) => { e.preventDefault(); runQuery(); });
  $('q-sql').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runQuery(); }
  });
  $('token').placeholder = token() ? 'token in use (this tab)' : 'bearer token';
  feedStart();
  pollStats();
  pollProjections();
}

init();
