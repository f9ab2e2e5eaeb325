// The dashboard's browser test: drives Debian's Chromium (through playwright-core, never with
// Playwright's own browser downloads) through the dashboard of a running rtc-telemetry fed with
// simulated traffic, and checks that every page shows what the query API answers.
//
//   node dashboard.mjs BASE_URL
//
// Environment: DASHBOARD_TOKEN (a token with the read and admin roles), DASHBOARD_READER_TOKEN
// (read only; optional), DASHBOARD_INGEST_TOKEN (no read role; optional), DASHBOARD_SCREENSHOTS
// (where screenshots go; default ../../target/dashboard-screenshots), DASHBOARD_CHROMIUM
// (default /usr/bin/chromium), DASHBOARD_TROUBLE_ROOM (the sid of a running room with a closed
// and an open quality issue, for the report and issue checks; optional), DASHBOARD_CLUSTER (`1`:
// the service runs in cluster mode; only step C runs, which checks the overview's cluster panel
// against GET /v1/cluster).
//
// Run by crates/telemetry-server/tests/it/dashboard.rs with TELEMETRY_TEST_BROWSER=1; the tools
// come from tools/setup-browser.sh. Exits non-zero with a message naming the failed check.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const base = (process.argv[2] ?? '').replace(/\/$/, '');
const token = process.env.DASHBOARD_TOKEN ?? '';
const readerToken = process.env.DASHBOARD_READER_TOKEN ?? '';
const ingestToken = process.env.DASHBOARD_INGEST_TOKEN ?? '';
const shots = process.env.DASHBOARD_SCREENSHOTS ?? path.join(here, '../../target/dashboard-screenshots');
const executablePath = process.env.DASHBOARD_CHROMIUM ?? '/usr/bin/chromium';
const troubleRoom = process.env.DASHBOARD_TROUBLE_ROOM ?? '';
const clusterMode = process.env.DASHBOARD_CLUSTER === '1';

if (!base || !token) {
  console.error('usage: DASHBOARD_TOKEN=... node dashboard.mjs BASE_URL');
  process.exit(64);
}

const started = Date.now();
const log = (message) => console.error(`dashboard.mjs [${((Date.now() - started) / 1000).toFixed(1)} s] ${message}`);

class CheckFailed extends Error {}
function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

/** The API, called by the script itself to compare with the page. */
async function api(pathAndQuery, options = {}) {
  const response = await fetch(`${base}${pathAndQuery}`, {
    method: options.method ?? 'GET',
    headers: { Authorization: `Bearer ${options.token ?? token}`, 'Content-Type': 'application/json' },
    body: options.body ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: response.status, body };
}

async function apiOk(pathAndQuery) {
  const { status, body } = await api(pathAndQuery);
  check(status === 200, `GET ${pathAndQuery} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** "1.23 Mbit/s" → 1230000. */
function parseBitrate(text) {
  const match = /([\d.,]+)\s*(bit|kbit|Mbit|Gbit)\/s/.exec(text);
  check(match, `"${text}" is not a bit rate`);
  const scale = { bit: 1, kbit: 1e3, Mbit: 1e6, Gbit: 1e9 }[match[2]];
  return Number(match[1].replaceAll(',', '')) * scale;
}

function digits(text) {
  return Number(String(text).replace(/[^\d]/g, ''));
}

/** "↑ 1,234.5 ms" → 1234.5; "—" → null. */
function numberIn(text) {
  const match = /-?[\d,]+(\.\d+)?/.exec(String(text));
  return match ? Number(match[0].replaceAll(',', '')) : null;
}

/** Checks that a figure shown with `decimals` fraction digits is `expected`. */
function near(shown, expected, decimals, what) {
  check(shown !== null, `${what}: no number shown, the API says ${expected}`);
  check(Math.abs(shown - expected) <= 0.5 * 10 ** -decimals + 1e-9, `${what}: the page shows ${shown}, the API ${expected}`);
}

/** Opens a folded panel (a <details>) unless it is open. */
async function unfold(page, testid) {
  const details = page.locator(`details[data-testid="${testid}"]`);
  if (!(await details.evaluate((element) => element.open))) await details.locator('> summary').click();
}

/** Caller-chosen names with markup must show as text: no element of theirs may exist. */
async function noInjectedMarkup(page, where) {
  const injected = await page.evaluate(() => document.querySelectorAll('[data-injected], img[src="x"]').length);
  check(injected === 0, `${where}: ${injected} elements made from names (markup injected)`);
}

const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const failures = [];
const problems = [];

/** A page that records its API requests and its errors (CSP violations are console errors). */
async function newPage(viewport, options = {}) {
  const context = await browser.newContext({ viewport, ...options });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.apiRequests = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/v1/')) page.apiRequests.push({ path: url.pathname, authorization: request.headers().authorization });
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A refused request is logged by Chromium as "Failed to load resource": expected for the
    // wrong tokens and the 404 of a missing webhook API.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  return page;
}

async function shot(page, name, fullPage = false) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  log(`screenshot ${path.relative(process.cwd(), file)}`);
}

async function signIn(page, value) {
  await page.locator('#token').fill(value);
  await page.locator('#signin-button').click();
}

async function canvasDrawn(page, selector) {
  const canvas = page.locator(`${selector} canvas`).first();
  await canvas.waitFor();
  // Count painted pixels: an empty chart would have none.
  return canvas.evaluate((element) => {
    const context = element.getContext('2d');
    const { data } = context.getImageData(0, 0, element.width, element.height);
    let painted = 0;
    for (let index = 3; index < data.length; index += 4) if (data[index] > 0) painted += 1;
    return { painted, width: element.width, height: element.height };
  });
}

/** Runs a step: in cluster mode step C only, otherwise every other one. */
async function step(name, run) {
  if (clusterMode !== name.startsWith('C.')) return;
  log(`step: ${name}`);
  try {
    await run();
  } catch (error) {
    const message = error instanceof CheckFailed ? error.message : `${error.stack ?? error}`;
    failures.push({ name, message });
    log(`FAILED: ${name}: ${message}`);
  }
}

await mkdir(shots, { recursive: true });
const page = await newPage({ width: 1280, height: 800 });
let roomSid = null;

await step('1. without a token: only the sign-in, and no API request', async () => {
  await page.goto(`${base}/`);
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.waitForLoadState('networkidle');
  check(await page.locator('#view').isHidden(), 'the page content is shown without a token');
  check(await page.locator('#topbar').isHidden(), 'the navigation is shown without a token');
  // A deep link without a token shows the sign-in too, still without a request.
  await page.goto(`${base}/#/rooms`);
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.waitForLoadState('networkidle');
  check(page.apiRequests.length === 0, `requests reached the API without a token: ${JSON.stringify(page.apiRequests)}`);
  await shot(page, 'signin-1280x800');
});

await step('2. a wrong token, and a token without the read role, are refused with a message', async () => {
  await signIn(page, 'not-a-token');
  await page.locator('#signin-error').filter({ hasText: 'token missing or wrong' }).waitFor();
  check(await page.locator('#view').isHidden(), 'content shown after a wrong token');
  check(await page.evaluate(() => sessionStorage.length) === 0, 'a wrong token stays in session storage');
  await shot(page, 'signin-wrong-token-1280x800');
  if (ingestToken) {
    await signIn(page, ingestToken);
    await page.locator('#signin-error').filter({ hasText: 'token lacks the read role' }).waitFor();
    check(await page.locator('#view').isHidden(), 'content shown for a token without the read role');
  }
});

await step('3. sign in; the overview shows what /v1/overview answers', async () => {
  page.apiRequests.length = 0;
  await signIn(page, token);
  // The deep link of step 1 is where signing in leads.
  await page.locator('[data-testid="rooms"]').waitFor();
  await page.locator('nav a[data-nav="overview"]').click();
  const shown = page.locator('[data-testid="active-rooms"]');
  await shown.waitFor();
  const overview = await apiOk('/v1/overview');
  const text = await shown.textContent();
  check(digits(text) === overview.activeRooms, `active rooms: the page shows "${text}", the API ${overview.activeRooms}`);
  const participants = await page.locator('[data-testid="active-participants"]').textContent();
  check(digits(participants) === overview.activeParticipants, `participants: the page shows "${participants}", the API ${overview.activeParticipants}`);
  const tracks = await page.locator('[data-testid="published-tracks"]').textContent();
  check(digits(tracks) === overview.publishedTracks, `tracks: the page shows "${tracks}", the API ${overview.publishedTracks}`);
  const outbox = await page.locator('[data-testid="webhook-outbox"]').textContent();
  check(overview.webhooks, `no webhook outbox in /v1/overview: ${JSON.stringify(overview)}`);
  check(outbox.includes(`${overview.webhooks.pending} pending`), `outbox: "${outbox}" vs ${JSON.stringify(overview.webhooks)}`);
  check(page.apiRequests.every((request) => request.authorization === `Bearer ${token}`), 'an API request without the token');
  await page.waitForLoadState('networkidle');
  await shot(page, 'overview-1280x800');
});

await step('3b. the overview lists the open quality issues as /v1/issues answers, and says single instance', async () => {
  const table = page.locator('[data-testid="open-issues"]');
  await table.waitFor();
  // An issue may open or close between the page's read and the script's: compare twice at most.
  let issues = [];
  for (let attempt = 0; attempt < 2; attempt += 1) {
    issues = (await apiOk('/v1/issues?open=true&limit=100')).issues;
    const shown = await page.locator('[data-testid="open-issues"] tbody tr').evaluateAll((rows) => rows.map((row) => row.dataset.issue));
    if (shown.length === issues.length && issues.every((issue) => shown.includes(issue.id))) break;
    check(attempt === 0, `open issues: the page lists ${JSON.stringify(shown)}, the API ${JSON.stringify(issues.map((i) => i.id))}`);
    await page.reload();
    await table.waitFor();
  }
  const title = await page.locator('[data-testid="issues"] h2').textContent();
  check(digits(title) === issues.length, `open issues title "${title}", the API lists ${issues.length}`);
  for (const issue of issues) {
    const row = page.locator(`[data-testid="open-issues"] tr[data-issue="${issue.id}"]`);
    const cell = async (column) => (await row.locator(`td[data-col="${column}"]`).textContent()).trim();
    check((await cell('kind')) === issue.kind.replaceAll('_', ' ').replace('rtt', 'RTT'), `issue ${issue.id}: kind "${await cell('kind')}" vs ${issue.kind}`);
    check((await cell('direction')).endsWith(issue.direction), `issue ${issue.id}: direction "${await cell('direction')}" vs ${issue.direction}`);
    check((await cell('participant')) === (issue.participantIdentity || issue.participantSid), `issue ${issue.id}: participant "${await cell('participant')}" vs ${issue.participantIdentity}`);
    check((await cell('track')) === issue.trackSid, `issue ${issue.id}: track "${await cell('track')}" vs ${issue.trackSid}`);
    const since = await row.locator('td[data-col="since"] time').getAttribute('datetime');
    check(since === issue.startedAt, `issue ${issue.id}: since ${since}, the API ${issue.startedAt}`);
    if (issue.kind !== 'no_media') {
      const decimals = { packet_loss: 1, jitter: 1, rtt: 0, low_score: 2 }[issue.kind];
      near(numberIn(await cell('value')), issue.value, decimals, `issue ${issue.id}: worst value`);
      const threshold = numberIn((await cell('value')).split(/[<>]/)[1]);
      near(threshold, issue.threshold, decimals, `issue ${issue.id}: threshold`);
    }
    check(digits(await cell('affected')) === issue.affected.length, `issue ${issue.id}: affected "${await cell('affected')}" vs ${issue.affected.length}`);
    const link = row.locator('td[data-col="room"] a');
    check((await link.getAttribute('href')) === `#/rooms/${encodeURIComponent(issue.roomSid)}`, `issue ${issue.id}: the room link`);
    check((await link.textContent()) === (issue.roomName || issue.roomSid), `issue ${issue.id}: room "${await link.textContent()}" vs "${issue.roomName}"`);
  }
  if (troubleRoom) {
    const open = issues.filter((issue) => issue.roomSid === troubleRoom);
    check(open.length === 1 && open[0].kind === 'jitter', `the room in trouble's open issues: ${JSON.stringify(open)}`);
  }
  const instances = await page.locator('[data-testid="instances"]').textContent();
  const note = await page.locator('[data-stat="instances"] .stat-note').textContent();
  check(instances.trim() === '1' && note.includes('single instance'), `without the cluster: instances "${instances}", "${note}"`);
  check(await page.locator('[data-testid="cluster"]').count() === 0, 'a cluster panel without the cluster');
  check(!page.apiRequests.some((request) => request.path === '/v1/cluster'), 'the page asked /v1/cluster without the cluster');
  await noInjectedMarkup(page, 'the overview');
  await page.locator('[data-testid="issues"]').scrollIntoViewIfNeeded();
  await shot(page, 'overview-issues-1280x800');
});

await step('3c. in cluster mode (the answers of a cluster, routed to the page): instances and partitions', async () => {
  const lastSeen = new Date(Date.now() - 2000).toISOString();
  const status = {
    instances: [
      { id: 'rtct-a', partitions: [0, 1, 2, 3], lastSeen },
      { id: 'rtct-b', partitions: [4, 5, 6], lastSeen },
    ],
    partitions: 8,
  };
  await page.route('**/v1/overview', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    await route.fulfill({ response, json: { ...body, cluster: { instanceId: 'rtct-a', partitions: 8 } } });
  });
  await page.route('**/v1/cluster', (route) => route.fulfill({ json: status }));
  try {
    await page.reload();
    await page.locator('[data-testid="cluster-instances"]').waitFor();
    for (const instance of status.instances) {
      const row = page.locator(`[data-testid="cluster-instances"] tr[data-instance="${instance.id}"]`);
      const owned = digits(await row.locator('td[data-col="owned"]').textContent());
      check(owned === instance.partitions.length, `instance ${instance.id}: ${owned} partitions shown, ${instance.partitions.length} held`);
      const seen = await row.locator('td[data-col="last-seen"] time').getAttribute('datetime');
      check(seen === instance.lastSeen, `instance ${instance.id}: last seen ${seen} vs ${instance.lastSeen}`);
    }
    const cells = await page.locator('[data-testid="cluster-partitions"] [data-partition]').evaluateAll((all) => all.map((cell) => [cell.dataset.partition, cell.dataset.owner]));
    const expected = [...Array(8).keys()].map((n) => [String(n), status.instances.find((i) => i.partitions.includes(n))?.id ?? '']);
    check(JSON.stringify(cells) === JSON.stringify(expected), `partitions: ${JSON.stringify(cells)}, expected ${JSON.stringify(expected)}`);
    const instances = await page.locator('[data-testid="instances"]').textContent();
    const note = await page.locator('[data-stat="instances"] .stat-note').textContent();
    check(instances.trim() === '2' && note.includes('1 without owner'), `cluster card: "${instances}", "${note}"`);
    await page.locator('[data-testid="cluster"]').scrollIntoViewIfNeeded();
    await shot(page, 'overview-cluster-1280x800');
  } finally {
    await page.unroute('**/v1/overview');
    await page.unroute('**/v1/cluster');
  }
});

await step('4. rooms → a room: participants, states and a track chart as the API says', async () => {
  await page.locator('nav a[data-nav="rooms"]').click();
  await page.locator('[data-testid="rooms"]').waitFor();
  const rooms = (await apiOk('/v1/rooms?limit=25')).rooms;
  const shownRows = await page.locator('[data-testid="rooms"] tbody tr').count();
  check(shownRows === rooms.length, `rooms: ${shownRows} rows shown, the API lists ${rooms.length}`);
  await shot(page, 'rooms-1280x800');
  // The search narrows the list to the rooms whose name contains the text.
  const name = rooms[0].name;
  await page.locator('input[name="name"]').fill(name);
  await page.locator('form.filters button[type="submit"]').click();
  await page.waitForFunction((n) => {
    const names = [...document.querySelectorAll('[data-testid="rooms"] tbody td[data-col="name"]')].map((td) => td.textContent);
    return names.length > 0 && names.every((text) => text.includes(n));
  }, name);
  await page.locator('nav a[data-nav="rooms"]').click();
  await page.locator('[data-testid="rooms"] tbody tr').nth(rooms.length - 1).waitFor();

  // A running room with participants and tracks.
  const room = rooms.find((r) => !r.endedAt && r.numParticipants > 1 && r.numTracks > 0) ?? rooms.find((r) => r.numTracks > 0);
  check(room, `no room with tracks among ${JSON.stringify(rooms)}`);
  roomSid = room.sid;
  await page.locator(`[data-testid="rooms"] tr[data-sid="${room.sid}"] a`).first().click();
  await page.locator('[data-testid="participants-table"]').waitFor();
  const detail = await apiOk(`/v1/rooms/${room.sid}`);
  const rows = page.locator('[data-testid="participants-table"] tbody tr');
  check(await rows.count() === detail.participants.length, `participants: ${await rows.count()} rows, the API has ${detail.participants.length}`);
  for (const participant of detail.participants) {
    const row = page.locator(`[data-testid="participants-table"] tr[data-sid="${participant.sid}"]`);
    check(await row.count() === 1, `participant ${participant.sid} is not shown`);
    const state = (await row.locator('td[data-col="state"]').textContent()).trim();
    check(state === participant.state, `participant ${participant.identity}: state "${state}" shown, the API says "${participant.state}"`);
    const identity = (await row.locator('td[data-col="identity"]').textContent()).trim();
    check(identity === participant.identity, `participant ${participant.sid}: identity "${identity}" vs "${participant.identity}"`);
    const times = await row.evaluate((tr) => Object.fromEntries(['joined', 'active', 'left'].map((column) =>
      [column, tr.querySelector(`td[data-col="${column}"] time`)?.getAttribute('datetime') ?? null])));
    for (const [column, field] of [['joined', 'joinedAt'], ['active', 'activeAt'], ['left', 'leftAt']]) {
      check(times[column] === (participant[field] ?? null), `participant ${participant.identity}: ${field} ${times[column]} shown, the API ${participant[field]}`);
    }
  }
  await page.locator('[data-testid="events"] li').first().waitFor();
  await shot(page, 'room-1280x800');

  // The track chart: the media series with the most windows.
  const from = new Date(detail.room.startedAt).getTime() - 60_000;
  const endLimit = detail.room.endedAt ? new Date(detail.room.endedAt).getTime() + 600_000 : Date.now() + 60_000;
  const to = Math.max(Math.min(endLimit, Date.now() + 60_000), from + 1000);
  const stats = await apiOk(`/v1/stats?roomSid=${room.sid}&from=${from}&to=${to}`);
  const series = stats.series.filter((s) => s.kind === 'media' && s.windows.length)
    .sort((a, b) => b.windows.length - a.windows.length)[0];
  check(series, `no media stats series for ${room.sid}`);
  const key = [series.trackSid, series.participantSid, series.direction].join('~');
  // The per-track list is folded under the report until asked for.
  check(!(await page.locator('details[data-testid="per-track"]').evaluate((element) => element.open)), 'the per-track list is not folded');
  await unfold(page, 'per-track');
  await page.locator(`[data-testid="series-table"] tr[data-series="${key}"] a[data-testid="open-chart"]`).click();
  await page.locator('[data-testid="series-charts"]').waitFor();
  for (const chart of ['chart-bitrate', 'chart-loss', 'chart-jitter', 'chart-rtt', 'chart-score']) {
    const drawn = await canvasDrawn(page, `[data-testid="${chart}"]`);
    check(drawn.width > 100 && drawn.painted > 200, `${chart}: the canvas is not drawn (${JSON.stringify(drawn)})`);
  }
  const latest = series.windows[series.windows.length - 1];
  const avgText = await page.locator('[data-testid="latest-avg"]').textContent();
  const shown = parseBitrate(avgText);
  check(Math.abs(shown - latest.avgBps) <= Math.max(0.006 * latest.avgBps, 1),
    `latest average bit rate: the page shows "${avgText}", the API ${latest.avgBps} bit/s`);
  const peakText = await page.locator('[data-testid="latest-peak"]').textContent();
  check(Math.abs(parseBitrate(peakText) - latest.peakBps) <= Math.max(0.006 * latest.peakBps, 1),
    `latest peak bit rate: the page shows "${peakText}", the API ${latest.peakBps} bit/s`);
  await page.waitForTimeout(150);
  await shot(page, 'room-track-charts-1280x800');
  await shot(page, 'room-full-1280', true);
});

await step('4b. the room in trouble: its report as the API answers, its issues on the timeline and the charts', async () => {
  check(troubleRoom, 'DASHBOARD_TROUBLE_ROOM is not set');
  await page.goto(`${base}/#/rooms/${encodeURIComponent(troubleRoom)}`);
  await page.locator('[data-testid="report-table"]').waitFor();
  // The bars' places, read at once: the page's span ends when it was drawn.
  const to = Date.now();
  const bars = await page.locator('[data-testid="issue-timeline"] li').evaluateAll((items) => items.map((li) => {
    const bar = li.querySelector('[data-testid="issue-bar"]');
    return { id: li.dataset.issue, start: bar.dataset.start, end: bar.dataset.end, open: bar.classList.contains('open'), left: parseFloat(bar.style.left), width: parseFloat(bar.style.width) };
  }));
  const report = await apiOk(`/v1/rooms/${encodeURIComponent(troubleRoom)}/report`);
  const title = await page.locator('#view h1').textContent();
  check(title.includes(report.room.name), `the room's name "${report.room.name}" is not shown as text: "${title}"`);
  await noInjectedMarkup(page, 'the room page');
  check(report.issues.length === 2, `the room in trouble has ${report.issues.length} issues: ${JSON.stringify(report.issues)}`);

  // One row per participant, each figure as the report has it.
  const rows = page.locator('[data-testid="report-table"] tbody tr');
  check(await rows.count() === report.participants.length, `report: ${await rows.count()} rows, the API ${report.participants.length} participants`);
  for (const participant of report.participants) {
    const row = page.locator(`[data-testid="report-table"] tr[data-sid="${participant.sid}"]`);
    const cell = (column, dir) => row.locator(dir ? `td[data-col="${column}"] [data-dir="${dir}"]` : `td[data-col="${column}"]`).textContent();
    const who = participant.identity;
    check((await cell('identity')).trim() === participant.identity, `report ${who}: identity "${await cell('identity')}"`);
    check((await cell('outcome')).trim() === participant.outcome, `report ${who}: outcome "${await cell('outcome')}" vs ${participant.outcome}`);
    near(numberIn(await cell('connect')), participant.connectMs, 0, `report ${who}: connect time`);
    for (const [dir, figures, rateColumn] of [['up', participant.upstream, 'up-rate'], ['down', participant.downstream, 'down-rate']]) {
      const what = `report ${who} ${dir}stream`;
      if (Number(figures.bytes) === 0) {
        for (const column of ['loss', 'jitter', 'rtt', 'mos']) check((await cell(column, dir)).includes('—'), `${what}: ${column} shown without media`);
        check((await cell(rateColumn)).trim() === '—', `${what}: a rate shown without media`);
        continue;
      }
      const rate = parseBitrate(await cell(rateColumn));
      check(Math.abs(rate - figures.avgBps) <= Math.max(0.006 * figures.avgBps, 1), `${what}: rate ${rate}, the API ${figures.avgBps}`);
      near(numberIn(await cell('loss', dir)), figures.lossPct, 2, `${what}: loss %`);
      near(numberIn(await cell('jitter', dir)), figures.jitterP95Ms, 1, `${what}: jitter p95`);
      near(numberIn(await cell('rtt', dir)), figures.rttP95Ms, 0, `${what}: RTT p95`);
      if (figures.mosAvg === null) check((await cell('mos', dir)).includes('—'), `${what}: a MOS shown without one`);
      else near(numberIn(await cell('mos', dir)), figures.mosAvg, 2, `${what}: MOS`);
    }
    const shownIssues = await row.locator('td[data-col="issues"] [data-issue]').evaluateAll((all) => all.map((b) => b.dataset.issue));
    check(JSON.stringify(shownIssues) === JSON.stringify(participant.issues.map((i) => i.id)), `report ${who}: issues ${JSON.stringify(shownIssues)} vs ${JSON.stringify(participant.issues.map((i) => i.id))}`);
  }
  await shot(page, 'room-trouble-report-1280x800');

  // The issues on the timeline: one bar each, from its start to its end (open ones to now).
  const from = Math.min(new Date(report.room.startedAt).getTime(), ...report.issues.map((i) => new Date(i.startedAt).getTime()));
  check(bars.length === report.issues.length, `timeline: ${bars.length} issue bars, the report has ${report.issues.length} issues`);
  for (const issue of report.issues) {
    const bar = bars.find((b) => b.id === issue.id);
    check(bar, `issue ${issue.id} (${issue.kind}) is not on the timeline`);
    check(bar.start === issue.startedAt && bar.end === (issue.endedAt ?? ''), `issue ${issue.id}: bar ${bar.start}–${bar.end}, the API ${issue.startedAt}–${issue.endedAt}`);
    check(bar.open === !issue.endedAt, `issue ${issue.id}: drawn ${bar.open ? 'open' : 'closed'}`);
    const start = new Date(issue.startedAt).getTime();
    const end = issue.endedAt ? new Date(issue.endedAt).getTime() : to;
    const left = ((start - from) / (to - from)) * 100;
    check(Math.abs(bar.left - left) < 2, `issue ${issue.id}: bar at ${bar.left} %, expected ${left.toFixed(1)} %`);
    const width = ((end - start) / (to - from)) * 100;
    check(Math.abs(bar.width - width) < 2, `issue ${issue.id}: bar ${bar.width} % wide, expected ${width.toFixed(1)} %`);
    // And in the events: the start, and the end of a closed one.
    const types = await page.locator(`[data-testid="events"] li[data-issue="${issue.id}"]`).evaluateAll((all) => all.map((li) => li.dataset.type));
    const expected = issue.endedAt ? ['QUALITY_ISSUE_STARTED', 'QUALITY_ISSUE_ENDED'] : ['QUALITY_ISSUE_STARTED'];
    check(JSON.stringify(types) === JSON.stringify(expected), `issue ${issue.id}: events ${JSON.stringify(types)}`);
  }
  // A report row's issue leads to its bar.
  const closed = report.issues.find((issue) => issue.endedAt);
  await page.locator(`[data-testid="report-table"] td[data-col="issues"] [data-issue="${closed.id}"]`).first().click();
  await page.locator(`[data-testid="issue-timeline"] li.marked[data-issue="${closed.id}"]`).waitFor();
  await page.waitForTimeout(150);
  await shot(page, 'room-trouble-timeline-1280x800');

  // The charts: the publisher's upstream has the closed issue's band; the first subscriber's
  // downstream has its own open jitter issue and the publisher's loss that reached it.
  const open = report.issues.find((issue) => !issue.endedAt);
  await unfold(page, 'per-track');
  for (const [participantSid, direction, ids] of [
    [closed.participantSid, 'upstream', [closed.id]],
    [open.participantSid, 'downstream', [closed.id, open.id]],
  ]) {
    const key = [closed.trackSid, participantSid, direction].join('~');
    const badges = await page.locator(`[data-testid="series-table"] tr[data-series="${key}"] td[data-col="issues"] .badge`).count();
    check(badges === ids.length, `series ${key}: ${badges} issue badges, expected ${ids.length}`);
    await page.locator(`[data-testid="series-table"] tr[data-series="${key}"] a[data-testid="open-chart"]`).click();
    await page.locator(`[data-testid="series-table"] tr.selected[data-series="${key}"]`).waitFor();
    await page.locator('[data-testid="series-charts"]').waitFor();
    const listed = await page.locator('[data-testid="series-issues"] li').evaluateAll((all) => all.map((li) => li.dataset.issue));
    check(JSON.stringify([...listed].sort()) === JSON.stringify([...ids].sort()), `series ${key}: issues listed ${JSON.stringify(listed)}, expected ${JSON.stringify(ids)}`);
    for (const chart of ['chart-bitrate', 'chart-loss', 'chart-jitter']) {
      const bands = await page.locator(`[data-testid="${chart}"]`).getAttribute('data-bands');
      check(bands === String(ids.length), `series ${key}: ${chart} shades ${bands} issues, expected ${ids.length}`);
      const drawn = await canvasDrawn(page, `[data-testid="${chart}"]`);
      check(drawn.width > 100 && drawn.painted > 200, `${chart}: the canvas is not drawn (${JSON.stringify(drawn)})`);
    }
    await noInjectedMarkup(page, `the charts of ${key}`);
    await page.waitForTimeout(150);
    await shot(page, `room-trouble-charts-${direction}-1280x800`);
  }
  await shot(page, 'room-trouble-full-1280', true);
});

await step('5. a node and its rates chart', async () => {
  const nodes = (await apiOk('/v1/nodes')).nodes;
  check(nodes.length > 0, 'no nodes');
  await page.locator('nav a[data-nav="nodes"]').click();
  await page.locator('[data-testid="nodes"]').waitFor();
  check(await page.locator('[data-testid="nodes"] tbody tr').count() === nodes.length, 'nodes: row count differs from the API');
  await shot(page, 'nodes-1280x800');
  const rated = [];
  for (const node of nodes) {
    const rates = await apiOk(`/v1/nodes/${encodeURIComponent(node.nodeId)}/rates?window=5s`);
    rated.push([node, rates.points.filter((p) => p.bpsIn > 0).length]);
  }
  const [node, points] = rated.sort((a, b) => b[1] - a[1])[0];
  check(points > 0, `no node has rates in the last 15 minutes: ${JSON.stringify(rated.map(([n, c]) => [n.nodeId, c]))}`);
  await page.locator(`[data-testid="nodes"] tr[data-node="${node.nodeId}"] a`).click();
  await page.locator('[data-testid="node-rates"]').waitFor();
  const drawn = await canvasDrawn(page, '[data-testid="chart-node-bps"]');
  check(drawn.width > 100 && drawn.painted > 200, `node rates chart not drawn (${JSON.stringify(drawn)})`);
  await page.waitForTimeout(150);
  await shot(page, 'node-1280x800');
});

await step('6. webhooks: deliveries, and retry of a dead one', async () => {
  const probe = await api('/v1/webhooks/deliveries');
  check(probe.status !== 404, 'webhook API missing: GET /v1/webhooks/deliveries answers 404');
  check(probe.status === 200, `GET /v1/webhooks/deliveries answered ${probe.status}: ${JSON.stringify(probe.body)}`);
  const deliveries = probe.body.deliveries;
  await page.locator('nav a[data-nav="webhooks"]').click();
  await page.locator('[data-testid="deliveries-table"]').waitFor();
  const shownRows = await page.locator('[data-testid="deliveries-table"] tbody tr').count();
  check(shownRows === Math.min(deliveries.length, 50), `deliveries: ${shownRows} rows, the API lists ${deliveries.length}`);
  for (const delivery of deliveries.slice(0, 50)) {
    const row = page.locator(`[data-testid="deliveries-table"] tr[data-id="${delivery.id}"]`);
    const status = (await row.locator('td[data-col="status"]').textContent()).trim();
    check(status === delivery.status, `delivery ${delivery.id}: "${status}" shown, the API says "${delivery.status}"`);
    const attempts = digits(await row.locator('td[data-col="attempts"]').textContent());
    check(attempts === delivery.attempts, `delivery ${delivery.id}: ${attempts} attempts shown, the API says ${delivery.attempts}`);
  }
  await shot(page, 'webhooks-1280x800');
  const dead = deliveries.find((d) => d.status === 'dead');
  check(dead, `no dead delivery to retry: ${JSON.stringify(deliveries.map((d) => d.status))}`);
  const row = page.locator(`[data-testid="deliveries-table"] tr[data-id="${dead.id}"]`);
  await row.locator('[data-testid="retry"]').click();
  await page.waitForFunction((id) => {
    const element = document.querySelector(`[data-testid="deliveries-table"] tr[data-id="${id}"]`);
    return element && element.dataset.status === 'delivered';
  }, dead.id, { timeout: 15_000 }).catch(() => {});
  const after = (await row.locator('td[data-col="status"]').textContent()).trim();
  check(after !== 'dead', `delivery ${dead.id} still shows "dead" after the retry`);
  const fresh = await apiOk(`/v1/webhooks/deliveries/${dead.id}`);
  const freshStatus = (fresh.delivery ?? fresh).status;
  check(after === freshStatus, `delivery ${dead.id}: "${after}" shown after the retry, the API says "${freshStatus}"`);
  await shot(page, 'webhooks-after-retry-1280x800');

  // Deliveries' detail page: its attempts.
  await row.locator('a').first().click();
  await page.locator('h2', { hasText: 'Attempts' }).waitFor();
  await shot(page, 'delivery-1280x800');

  // A read-only token sees no admin buttons.
  if (readerToken) {
    await page.locator('#sign-out').click();
    await page.locator('#signin').waitFor({ state: 'visible' });
    await signIn(page, readerToken);
    await page.locator('#topbar').waitFor({ state: 'visible' });
    await page.locator('nav a[data-nav="webhooks"]').click();
    await page.locator('[data-testid="deliveries-table"]').waitFor();
    check(await page.locator('[data-testid="retry"]').count() === 0, 'a read-only token is shown retry buttons');
    check(await page.locator('[data-testid="replay"]').count() === 0, 'a read-only token is shown the replay form');
    check(await page.locator('[data-testid="admin-note"]').count() === 1, 'no note that retry needs the admin role');
  }
});

await step('7. a phone (390×844): overview and room without sideways scrolling', async () => {
  const phone = await newPage({ width: 390, height: 844 }, { isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await phone.goto(`${base}/`);
  await phone.locator('#signin').waitFor({ state: 'visible' });
  await shot(phone, 'signin-390x844');
  await signIn(phone, token);
  await phone.locator('[data-testid="active-rooms"]').waitFor();
  await phone.waitForLoadState('networkidle');
  const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(await overflow() <= 0, `the overview is ${await overflow()} px wider than the phone`);
  await shot(phone, 'overview-390x844');
  await shot(phone, 'overview-full-390', true);
  if (roomSid) {
    await phone.goto(`${base}/#/rooms/${roomSid}`);
    await phone.locator('[data-testid="participants-table"]').waitFor();
    await unfold(phone, 'per-track');
    await phone.locator('[data-testid="open-chart"]').first().click();
    await phone.locator('[data-testid="chart-bitrate"] canvas').waitFor();
    await phone.waitForTimeout(200);
    check(await overflow() <= 0, `the room page is ${await overflow()} px wider than the phone`);
    const width = await phone.locator('[data-testid="chart-bitrate"] canvas').first().evaluate((c) => c.getBoundingClientRect().width);
    check(width <= 390 && width > 250, `the chart is ${width} px wide on a 390 px phone`);
    await shot(phone, 'room-charts-390x844');
    await phone.evaluate(() => window.scrollTo(0, 0));
    await shot(phone, 'room-390x844');
    await shot(phone, 'room-full-390', true);
  }
});

await step('C. a service in cluster mode: the overview shows its instances and partitions as /v1/cluster answers', async () => {
  const clusterPage = await newPage({ width: 1280, height: 800 });
  await clusterPage.goto(`${base}/`);
  await signIn(clusterPage, token);
  await clusterPage.locator('[data-testid="cluster-instances"]').waitFor();
  const overview = await apiOk('/v1/overview');
  check(overview.cluster, `/v1/overview has no cluster: ${JSON.stringify(overview)}`);
  const status = await apiOk('/v1/cluster');
  const rows = await clusterPage.locator('[data-testid="cluster-instances"] tbody tr').evaluateAll((all) => all.map((row) => ({
    id: row.dataset.instance,
    owned: Number(row.querySelector('td[data-col="owned"]').textContent.replace(/[^\d]/g, '')),
    seen: row.querySelector('td[data-col="last-seen"] time').getAttribute('datetime'),
  })));
  check(JSON.stringify(rows.map((r) => [r.id, r.owned])) === JSON.stringify(status.instances.map((i) => [i.id, i.partitions.length])),
    `instances: ${JSON.stringify(rows)}, the API ${JSON.stringify(status.instances)}`);
  // Heartbeats move lastSeen on: the page's must be recent, not equal to a later read's.
  for (const row of rows) check(Date.now() - new Date(row.seen) < 30_000, `instance ${row.id}: last seen ${row.seen}`);
  const cells = await clusterPage.locator('[data-testid="cluster-partitions"] [data-partition]').evaluateAll((all) => all.map((cell) => cell.dataset.owner));
  const owners = [...Array(status.partitions).keys()].map((n) => status.instances.find((i) => i.partitions.includes(n))?.id ?? '');
  check(JSON.stringify(cells) === JSON.stringify(owners), `partitions: ${JSON.stringify(cells)}, the API ${JSON.stringify(owners)}`);
  const self = await clusterPage.locator(`[data-testid="cluster-instances"] tr[data-instance="${overview.cluster.instanceId}"]`).textContent();
  check(self.includes('(this one)'), `the instance answering is not marked: "${self}"`);
  const instances = await clusterPage.locator('[data-testid="instances"]').textContent();
  check(Number(instances) === status.instances.length, `instances card "${instances}", the API ${status.instances.length}`);
  await clusterPage.locator('[data-testid="cluster"]').scrollIntoViewIfNeeded();
  await shot(clusterPage, 'overview-cluster-real-1280x800');
});

await browser.close();
if (problems.length) failures.push({ name: 'the page logged errors', message: problems.join('\n') });

const seconds = ((Date.now() - started) / 1000).toFixed(1);
for (const failure of failures) {
  console.error(`dashboard.mjs: FAILED: ${failure.name}: ${failure.message}`);
}
if (failures.length) {
  console.error(`dashboard.mjs: ${failures.length} failed (${seconds} s); screenshots in ${shots}`);
  process.exit(1);
}
console.error(`dashboard.mjs: every check passed (${seconds} s); screenshots in ${shots}`);
