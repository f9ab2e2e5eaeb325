// The overview: live counts (rooms, participants, tracks), the ingest rate derived from two
// polls of the accepted-calls counter, webhook outbox health, the service's instances, the open
// quality issues, the active rooms and nodes, and in cluster mode the instances and partitions.

import { api } from '../api.js';
import { h, fill, number, table, timeCell, duration, empty, badge } from '../format.js';
import { issuesTable } from '../quality.js';
import { clusterStat, clusterPanel } from '../cluster.js';

/** Most open issues listed. */
const ISSUES_LIMIT = 100;

const POLL_MS = 5000;

/** The previous poll of `acceptedCalls`, kept across visits so the rate shows sooner. */
let previous = null;

function stat(label, id, value, note) {
  return h('div', { class: 'stat', data: { stat: id } },
    h('div', { class: 'stat-label', text: label }),
    h('div', { class: 'stat-value', data: { testid: id }, text: value }),
    h('div', { class: 'stat-note muted', text: note ?? '' }));
}

function ingestRate(overview) {
  const now = performance.now();
  const calls = Number(overview.acceptedCalls ?? 0);
  let rate = null;
  if (previous && now - previous.at > 500 && now - previous.at < 120000 && calls >= previous.calls) {
    rate = (calls - previous.calls) / ((now - previous.at) / 1000);
  }
  if (!previous || now - previous.at > 500) previous = { calls, at: now };
  return rate;
}

function outbox(overview) {
  const webhooks = overview.webhooks;
  if (!webhooks) return { value: 'n/a', note: 'no webhook outbox in this service' };
  const dead = Number(webhooks.dead ?? 0);
  return {
    value: `${number(webhooks.pending)} pending`,
    note: `${number(webhooks.delivered)} delivered · ${number(dead)} dead`,
    dead,
  };
}

function renderStats(overview, rate, cluster) {
  const box = outbox(overview);
  const instances = clusterStat(overview, cluster);
  const stats = h('div', { class: 'stats' },
    stat('Active rooms', 'active-rooms', number(overview.activeRooms)),
    stat('Participants', 'active-participants', number(overview.activeParticipants), 'joined or active'),
    stat('Published tracks', 'published-tracks', number(overview.publishedTracks)),
    stat('Ingest rate', 'ingest-rate', rate === null ? '—' : `${number(rate, rate < 10 ? 1 : 0)} calls/s`,
      `${number(overview.acceptedCalls)} calls accepted since start`),
    stat('Webhook outbox', 'webhook-outbox', box.value, box.note),
    stat('Instances', 'instances', instances.value, instances.note));
  if (box.dead > 0) stats.querySelector('[data-stat="webhook-outbox"]').classList.add('warn');
  if (instances.warn) stats.querySelector('[data-stat="instances"]').classList.add('warn');
  return stats;
}

/** The open issues' panel body: the table, and a note when the list is cut. */
function renderIssues(issues) {
  return [
    issuesTable(issues),
    issues.length >= ISSUES_LIMIT && h('p', { class: 'muted small', text: `The oldest ${ISSUES_LIMIT} open issues.` }),
  ];
}

/** `GET /v1/cluster` in cluster mode; null without it. */
function clusterStatus(overview, signal) {
  return overview.cluster ? api('/v1/cluster', { signal }) : Promise.resolve(null);
}

/** Renders the overview and polls it while it is shown. */
export async function overviewPage(context) {
  const { view, signal } = context;
  document.title = 'Overview · rtc-telemetry';
  const [overview, rooms, nodes, issues] = await Promise.all([
    context.refreshOverview(signal),
    api('/v1/rooms?active=true&limit=10', { signal }),
    api('/v1/nodes', { signal }),
    api(`/v1/issues?open=true&limit=${ISSUES_LIMIT}`, { signal }),
  ]);
  const cluster = await clusterStatus(overview, signal);
  if (!context.active()) return;
  const statsBox = h('div', {}, renderStats(overview, ingestRate(overview), cluster));
  const issuesBox = h('div', {}, renderIssues(issues.issues));
  const issuesTitle = h('h2', { text: `Open quality issues (${issues.issues.length})` });
  const clusterBox = h('div', {}, cluster && clusterPanel(overview, cluster));
  fill(view, 
    h('div', { class: 'page-head' }, h('h1', { text: 'Overview' }),
      h('span', { class: 'muted small', text: `updates every ${POLL_MS / 1000} s` })),
    statsBox,
    h('section', { class: 'panel', data: { testid: 'issues' } },
      h('div', { class: 'panel-head' }, issuesTitle,
        h('span', { class: 'muted small', text: 'worst value since the issue opened; affected: the subscribers a publisher\'s trouble reached' })),
      issuesBox),
    h('div', { class: 'columns' },
      h('section', { class: 'panel' },
        h('div', { class: 'panel-head' }, h('h2', { text: 'Active rooms' }), h('a', { href: '#/rooms', text: 'All rooms →' })),
        rooms.rooms.length
          ? table([
            { label: 'Room', cell: (room) => h('a', { href: `#/rooms/${encodeURIComponent(room.sid)}`, text: room.name || room.sid }) },
            { label: 'Started', cell: (room) => timeCell(room.startedAt) },
            { label: 'For', cell: (room) => duration(room.startedAt, room.endedAt) },
            { label: 'Participants', class: 'num', cell: (room) => number(room.numParticipants) },
            { label: 'Tracks', class: 'num', cell: (room) => number(room.numTracks) },
          ], rooms.rooms.map((room) => ({ value: room })))
          : empty('No active rooms.')),
      h('section', { class: 'panel' },
        h('div', { class: 'panel-head' }, h('h2', { text: 'Nodes' }), h('a', { href: '#/nodes', text: 'All nodes →' })),
        nodes.nodes.length
          ? table([
            { label: 'Node', cell: (node) => h('a', { href: `#/nodes/${encodeURIComponent(node.nodeId)}`, text: node.nodeId }) },
            { label: 'Last seen', cell: (node) => timeCell(node.lastSeen) },
            { label: 'State', cell: (node) => (Date.now() - new Date(node.lastSeen) < 120000 ? badge('reporting', 'active') : badge('quiet', 'left')) },
          ], nodes.nodes.map((node) => ({ value: node })))
          : empty('No node has reported yet.'))),
    clusterBox);

  const poll = async () => {
    try {
      const next = await context.refreshOverview(signal);
      const [open, status] = await Promise.all([
        api(`/v1/issues?open=true&limit=${ISSUES_LIMIT}`, { signal }),
        clusterStatus(next, signal),
      ]);
      if (!context.active()) return;
      fill(statsBox, renderStats(next, ingestRate(next), status));
      issuesTitle.textContent = `Open quality issues (${open.issues.length})`;
      fill(issuesBox, renderIssues(open.issues));
      fill(clusterBox, status && clusterPanel(next, status));
    } catch {
      // A refused read signs out (api.js); a passing failure waits for the next poll.
    }
  };
  // The first rate needs two polls: the second comes soon after the first.
  const first = setTimeout(poll, 1500);
  const timer = setInterval(poll, POLL_MS);
  context.onCleanup(() => {
    clearTimeout(first);
    clearInterval(timer);
  });
}
