// The web console in a real browser: headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core, against a real evlogd with
// tokens, its own data dir and a free port.  Every wait is a condition with
// a deadline (playwright's waitFor / waitForFunction); nothing sleeps.
//
//   EVL_BIN_DIR=build node tests/console/console_test.mjs
// Run through tests/console/console_test.sh (ctest: console_test), which
// installs playwright-core from the lock file first.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.EVL_BIN_DIR || process.cwd();
const SHOT = process.env.EVL_CONSOLE_SHOT || path.join(BIN, 'console.png');
const T = 20000; // ms: the deadline of each wait (ASan builds are slow)
const ADMIN = 'admin-secret-0123', READER = 'reader-secret-4567';

let passed = 0, failed = 0;
function fail(msg) { throw new Error(msg); }
function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b))
    fail(`${what}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`);
}

// ------------------------------------------------------------- evlogd

async function startServer() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'evlog-console-'));
  fs.writeFileSync(path.join(tmp, 'tokens'), `${ADMIN} admin\n${READER} reader\n`);
  const proc = spawn(path.join(BIN, 'evlogd'), ['--data', path.join(tmp, 'data'),
    '--listen', '127.0.0.1:0', '--threads', '2', '--token-file', path.join(tmp, 'tokens')],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('evlogd did not start in time: ' + log)), T);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+) /.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`evlogd exited ${code}: ${log}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  return {
    url: `http://127.0.0.1:${port}`, tmp, log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      const r = await exited;
      fs.rmSync(tmp, { recursive: true, force: true });
      return r;
    },
  };
}

let srv;

async function call(method, p, body, tok = ADMIN) {
  const headers = { Authorization: 'Bearer ' + tok };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(srv.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) fail(`${method} ${p}: ${r.status} ${text}`);
  return JSON.parse(text);
}

// Append events to a stream; the positions they got.
async function append(stream, events) {
  const r = await call('POST', '/streams/' + encodeURIComponent(stream), events);
  return r.events.map((e) => e.position);
}

// ------------------------------------------------------------ helpers

const text = (page, sel) => page.locator(sel).textContent();
const waitText = (page, sel, re) =>
  page.locator(sel, { hasText: re }).first().waitFor({ timeout: T });
const feedRow = (page, pos) => page.locator(`#feed tbody tr[data-position="${pos}"]`);
const projCell = (page, name, col) => page.locator(`#projections tr[data-projection="${name}"] td`).nth(col);

async function tableOf(page, sel) {
  return page.$eval(sel, (t) => ({
    head: [...t.querySelectorAll('thead th')].map((th) => th.textContent),
    rows: [...t.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)),
  }));
}

async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log('ok - ' + name);
  } catch (e) {
    failed++;
    console.log('not ok - ' + name + '\n  ' + String(e.stack || e).split('\n').join('\n  '));
    throw e; // later steps build on this one
  }
}

// --------------------------------------------------------------- test

const jobs = [ // id, model, what happens to it
  ['a1', 'llama-3-8b-instruct', 'succeeded'], ['b2', 'mistral-7b-v0.3', 'running'],
  ['c3', 'qwen2-1.5b', 'queued'], ['d4', 'phi-3-mini', 'running'], ['e5', 'gemma-2-9b', 'succeeded'],
];

async function main() {
  srv = await startServer();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // the browser logs each refused request; those the test provokes are expected
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (400|401|403|404)/.test(m.text()))
      problems.push('console error: ' + m.text());
  });

  try {
    await step('without a token the page says it needs one', async () => {
      await page.goto(srv.url + '/');
      await waitText(page, '#banner', /needs a bearer token/);
      await waitText(page, '#feed-state', /^stopped$/);
    });

    await step('a token is entered once and kept for the tab', async () => {
      await page.fill('#token', READER);
      await page.click('#token-form button:has-text("Use token")');
      await waitText(page, '#feed-state', /^live$/);
      await page.locator('#banner').waitFor({ state: 'hidden', timeout: T });
      eq(await page.evaluate(() => sessionStorage.getItem('evlog.token')), READER, 'sessionStorage');
      await page.reload();
      await waitText(page, '#feed-state', /^live$/);
      await waitText(page, '#head', /^0$/);
      if (await page.locator('#banner').isVisible()) fail('banner after reload: ' + await text(page, '#banner'));
    });

    let last = 0;
    await step('the append rate and the head update live', async () => {
      // append back to back until the page shows a rate above zero
      let stop = false, n = 0;
      const load = (async () => {
        while (!stop && n < 3000) last = (await append('load-1', [{ type: 'Ping', data: { n: n++ } }]))[0];
      })();
      try {
        await page.waitForFunction(() => Number(document.getElementById('rate').textContent) > 0, null, { timeout: T });
      } finally {
        stop = true;
        await load;
      }
      await waitText(page, '#head', new RegExp('^' + last + '$'));
    });

    await step('event data is rendered as text, never as markup', async () => {
      const type = '<img src=x onerror="window.__xss=1">';
      const data = { html: '<script>window.__xss=1</script>', b: '<b>bold</b>' };
      const [p] = await append('xss-1', [{ type, data }]);
      await feedRow(page, p).waitFor({ timeout: T });
      eq(await feedRow(page, p).locator('td').nth(3).textContent(), type, 'type shown verbatim');
      eq(await page.locator('#feed img, #feed script, #feed tbody b').count(), 0, 'elements injected');
      await feedRow(page, p).click();
      await waitText(page, '#e-title', new RegExp('position ' + p + ' '));
      const shown = JSON.parse(await text(page, '#e-json'));
      eq([shown.type, shown.data, shown.subject], [type, data, 'xss-1'], 'event JSON');
      eq(await page.evaluate(() => window.__xss), undefined, 'injected script ran');
    });

    const pos = {}; // job id -> positions of its events
    await step('appended events appear in the feed', async () => {
      // a stream long enough to page through (in the stream browser, below)
      const ticks = await append('page-1', Array.from({ length: 25 }, (_, n) => ({ type: 'Tick', data: { n } })));
      await feedRow(page, ticks[24]).waitFor({ timeout: T });
      for (const [id, model, fate] of jobs) {
        const evs = [{ type: 'JobQueued', data: { id, model, quantize: 'q4_k_m' }, meta: { actor: 'console-test' } }];
        if (fate !== 'queued') evs.push({ type: 'JobStarted', data: { id, total_bytes: 4096 } });
        if (fate === 'succeeded') evs.push({ type: 'JobSucceeded', data: { id, local_path: '/models/' + model } });
        pos[id] = await append('job-' + id, evs);
      }
      for (const [id] of jobs) for (const p of pos[id]) await feedRow(page, p).waitFor({ timeout: T });
      const r = feedRow(page, pos.a1[0]).locator('td');
      eq(await r.nth(2).textContent(), 'job-a1', 'stream cell');
      eq(await r.nth(3).textContent(), 'JobQueued', 'type cell');
      eq(JSON.parse(await r.nth(4).textContent()), { id: 'a1', model: jobs[0][1], quantize: 'q4_k_m' }, 'data cell');
      // newest first, no event twice
      const shown = await page.$$eval('#feed tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.position)));
      for (let i = 1; i < shown.length; i++) if (shown[i] >= shown[i - 1]) fail('feed order: ' + shown.slice(0, 20));
    });

    await step('the feed filters by type and by category', async () => {
      await page.fill('#f-type', 'JobStarted');
      await page.click('#feed-form button:has-text("Apply")');
      const started = jobs.filter((j) => j[2] !== 'queued').map((j) => pos[j[0]][1]);
      await page.waitForFunction((n) => document.querySelectorAll('#feed tbody tr').length === n &&
        document.getElementById('feed-state').textContent === 'live', started.length, { timeout: T });
      // live: a JobQueued then a JobStarted; only the second may show
      const [q] = await append('job-f6', [{ type: 'JobQueued', data: { id: 'f6', model: 'tinyllama-1.1b' } }]);
      const [s] = await append('job-f6', [{ type: 'JobStarted', data: { id: 'f6' } }]);
      pos.f6 = [q, s];
      await feedRow(page, s).waitFor({ timeout: T });
      eq(await feedRow(page, q).count(), 0, 'JobQueued shown under a JobStarted filter');
      const types = await page.$$eval('#feed tbody tr td:nth-child(4)', (tds) => tds.map((td) => td.textContent));
      eq([...new Set(types)], ['JobStarted'], 'types shown');
      eq(types.length, started.length + 1, 'rows shown');

      await page.fill('#f-type', '');
      await page.fill('#f-category', 'xss');
      await page.click('#feed-form button:has-text("Apply")');
      await page.waitForFunction(() => {
        const cells = [...document.querySelectorAll('#feed tbody tr td:nth-child(3)')].map((td) => td.textContent);
        return cells.length === 1 && cells[0] === 'xss-1';
      }, null, { timeout: T });

      await page.fill('#f-category', '');
      await page.click('#feed-form button:has-text("Apply")');
      await feedRow(page, q).waitFor({ timeout: T });
    });

    await step('pause holds the feed; resume catches up what came in between', async () => {
      await page.click('#f-pause');
      await waitText(page, '#feed-state', /^paused$/);
      const [p] = await append('job-g7', [{ type: 'JobQueued', data: { id: 'g7', model: 'stablelm-3b' } }]);
      pos.g7 = [p];
      // the page knows the log has it (the head), and still does not show it
      await waitText(page, '#head', new RegExp('^' + p + '$'));
      eq(await feedRow(page, p).count(), 0, 'event shown while paused');
      await page.click('#f-pause');
      await feedRow(page, p).waitFor({ timeout: T });
      await waitText(page, '#feed-state', /^live$/);
      eq(await feedRow(page, p).count(), 1, 'rows for the event');
    });

    await step('the stream browser searches, pages and shows an event', async () => {
      await page.fill('#s-name', 'page');
      await page.click('#s-form button');
      await page.locator('#s-matches button', { hasText: /^page-1$/ }).click({ timeout: T });
      await waitText(page, '#s-page', /^page-1: revisions 0–19$/);
      eq(await page.locator('#s-events tbody tr').count(), 20, 'rows on page 1');
      await page.click('#s-next');
      await waitText(page, '#s-page', /^page-1: revisions 20–24$/);
      eq(await page.locator('#s-events tbody tr').count(), 5, 'rows on page 2');
      if (!(await page.locator('#s-next').isDisabled())) fail('Next enabled on the last page');
      await page.click('#s-prev');
      await waitText(page, '#s-page', /^page-1: revisions 0–19$/);
      await page.locator('#s-events tbody tr').nth(3).click();
      await waitText(page, '#e-title', /page-1 revision 3$/);
      const ev = JSON.parse(await text(page, '#e-json'));
      eq([ev.subject, ev.revision, ev.type, ev.data], ['page-1', 3, 'Tick', { n: 3 }], 'event JSON');
      await page.check('#s-backward');
      await page.click('#s-form button');
      await waitText(page, '#s-page', /^page-1: revisions 5–24$/);
      eq(await page.locator('#s-events tbody tr td:first-child').first().textContent(), '24', 'newest first');
      await page.uncheck('#s-backward');
      // a stream link in the feed opens that stream
      await feedRow(page, pos.e5[0]).locator('button.link').click();
      await waitText(page, '#s-page', /^job-e5: revisions 0–2$/);
      const t = await tableOf(page, '#s-events');
      eq(t.rows.map((r) => r[3]), ['JobQueued', 'JobStarted', 'JobSucceeded'], 'job-e5 types');
      eq(t.rows.map((r) => Number(r[1])), pos.e5, 'job-e5 positions');
      await page.locator('#s-events tbody tr').nth(0).click();
      await waitText(page, '#e-title', /job-e5 revision 0$/);
    });

    const want = jobs.concat([['f6', 'tinyllama-1.1b', 'running'], ['g7', 'stablelm-3b', 'queued']])
      .map(([id, model, st]) => [id, model, st]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const sql = 'SELECT id, model, status FROM jobs ORDER BY id';
    await step('a query on a projection answers as a table', async () => {
      const head = await call('GET', '/events?backward&limit=1');
      await waitText(page, '#head', new RegExp('^' + head.head + '$'));
      await page.waitForFunction((h) => {
        const tds = document.querySelectorAll('#projections tr[data-projection="jobs"] td');
        return tds.length && tds[2].textContent === String(h) && tds[3].textContent === '0';
      }, head.head, { timeout: T });
      await page.click('#projections tr[data-projection="jobs"] button:has-text("Query")');
      eq(await page.inputValue('#q-proj'), 'jobs', 'projection selected');
      await page.fill('#q-sql', 'DELETE FROM jobs');
      await page.click('#q-form button');
      await waitText(page, '#q-error', /^jobs: [\s\S]*\(400\)$/);
      await page.fill('#q-sql', sql);
      await page.press('#q-sql', 'Control+Enter');
      await waitText(page, '#q-info', new RegExp('^' + want.length + ' rows · position ' + head.head + ' '));
      eq(await text(page, '#q-error'), '', 'error left after a good query');
      eq(await tableOf(page, '#q-result'), { head: ['id', 'model', 'status'], rows: want }, 'result table');
    });

    await step('rebuild: refused with a reader token, done with an admin one', async () => {
      const rb = '#projections tr[data-projection="jobs"] button:has-text("Rebuild")';
      await page.click(rb);
      await waitText(page, '#projections tr[data-projection="jobs"] .note', /^rebuild refused: .*\(403\)$/);
      eq(await projCell(page, 'jobs', 5).textContent(), '0', 'generation');
      await page.fill('#token', ADMIN);
      await page.click('#token-form button:has-text("Use token")');
      await waitText(page, '#feed-state', /^live$/);
      // whether a progress bar showed depends on how fast the rebuild is: noted, not asserted
      await page.evaluate(() => {
        const row = document.querySelector('#projections tr[data-projection="jobs"]');
        new MutationObserver(() => { if (row.querySelector('progress')) window.__progress = true; })
          .observe(row, { childList: true, subtree: true });
      });
      await page.click(rb);
      await waitText(page, '#projections tr[data-projection="jobs"] .note', /^rebuilt in [0-9.]+ s \(generation 1\)$/);
      eq(await projCell(page, 'jobs', 5).textContent(), '1', 'generation');
      console.log('  ' + await text(page, '#projections tr[data-projection="jobs"] .note') +
        (await page.evaluate(() => window.__progress) ? '; progress bar shown' : '; too quick for a progress bar'));
      const st = await call('GET', '/projections/jobs');
      eq([st.state, st.generation], ['live', 1], 'status after the rebuild');
      await page.click('#q-form button');
      await page.locator('#q-info', { hasText: /rows · position/ }).waitFor({ timeout: T });
      eq(await tableOf(page, '#q-result'), { head: ['id', 'model', 'status'], rows: want }, 'rebuilt table');
    });

    await step('rebuild progress is drawn from the status rebuild object', async () => {
      // A real rebuild of this small log is over before a poll can see it
      // (noted above), so the status the page polls gets a rebuild in
      // flight, shaped as docs/http.md describes it, for a while.
      const rebuild = { spec_hash: 'b71e', position: 400, head: 1000, applied: 61, events_per_second: 2100,
        eta_seconds: 1, elapsed_seconds: 0.19 };
      // a poll in flight when the route is removed must not fail the test
      // ("Route is already handled"): unrouteAll waits for running handlers
      const fake = async (route) => {
        const resp = await route.fetch();
        const list = await resp.json();
        for (const p of list) if (p.name === 'runs') Object.assign(p, { state: 'rebuilding', rebuild });
        await route.fulfill({ response: resp, json: list });
      };
      const status = (u) => u.pathname === '/projections';
      await page.route(status, fake);
      try {
        const row = '#projections tr[data-projection="runs"]';
        await waitText(page, row + ' .rebuild', /^40% · 2100 ev\/s · eta 1 s$/);
        eq(await page.$eval(row + ' progress', (e) => [e.value, e.max]), [400, 1000], 'progress bar');
        if (!(await page.locator(row + ' button:has-text("Rebuild")').isDisabled())) fail('Rebuild enabled during a rebuild');
      } finally {
        await page.unrouteAll({ behavior: 'wait' });
      }
      await page.locator('#projections tr[data-projection="runs"] progress').waitFor({ state: 'detached', timeout: T });
    });

    await step('screenshot', async () => {
      // a few events of another service, so that the picture shows a mix
      for (const [h, cores] of [['gpu-a', 64], ['gpu-b', 32]]) {
        await append('node-' + h, [{ type: 'NodeRegistered', data: { hostname: h, url: `http://${h}:8001`, total_cores: cores } }]);
        await append('node-' + h, [{ type: 'NodeHeartbeatReceived', data: { hostname: h, cpu_percent: 41.5, memory_percent: 63 } }]);
      }
      const [p] = await append('job-c3', [{ type: 'JobStarted', data: { id: 'c3', total_bytes: 3.1e9 } }]);
      await feedRow(page, p).waitFor({ timeout: T });
      await page.waitForFunction(() => /^nodes 2/.test(document.querySelector('#projections tr[data-projection="nodes"] td.tables').textContent), null, { timeout: T });
      await page.click('#q-form button');
      await page.locator('#q-result td', { hasText: /^running$/ }).nth(3).waitFor({ timeout: T });
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: SHOT, fullPage: true });
      if (fs.statSync(SHOT).size < 20000) fail('screenshot too small: ' + SHOT);
      console.log('  screenshot: ' + SHOT);
    });

    await step('no script errors on the page', async () => {
      if (problems.length) fail(problems.join('\n'));
    });
  } finally {
    await browser.close();
    const r = await srv.stop();
    if (r.code !== 0) {
      failed++;
      console.log(`not ok - evlogd exited ${r.code} ${r.sig || ''}\n${srv.log()}`);
    }
  }
}

try {
  await main();
} catch (e) {
  if (!failed) { failed++; console.log('not ok - ' + (e.stack || e)); }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
