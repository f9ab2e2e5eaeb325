// Nodes: the SFU nodes seen, with their latest room states, and a node's honest rates (bytes and
// packets in and out per window, each sample spread over the seconds it covers).

import { api, query } from '../api.js';
import { h, fill, number, table, timeCell, empty, badge, bitrate, packetRate, time } from '../format.js';
import { chart, seconds } from '../charts.js';

const WINDOWS = ['1s', '5s', '30s', '60s'];
const RANGES = [['5m', 300], ['15m', 900], ['1h', 3600], ['6h', 21600], ['24h', 86400]];

function reporting(node) {
  return Date.now() - new Date(node.lastSeen) < 120000 ? badge('reporting', 'active') : badge('quiet', 'left');
}

function roomCount(node) {
  return node.rooms?.rooms?.length ?? null;
}

/** Renders the list of nodes. */
export async function nodesPage(context) {
  const { view, signal } = context;
  document.title = 'Nodes · rtc-telemetry';
  const { nodes } = await api('/v1/nodes', { signal });
  if (!context.active()) return;
  fill(view, 
    h('div', { class: 'page-head' }, h('h1', { text: 'Nodes' })),
    nodes.length
      ? table([
        { label: 'Node', cell: (node) => h('a', { href: `#/nodes/${encodeURIComponent(node.nodeId)}`, text: node.nodeId }) },
        { label: 'State', cell: reporting },
        { label: 'First seen', cell: (node) => timeCell(node.firstSeen) },
        { label: 'Last seen', cell: (node) => timeCell(node.lastSeen) },
        { label: 'Rooms (last report)', class: 'num', cell: (node) => number(roomCount(node)) },
      ], nodes.map((node) => ({ value: node, attrs: { data: { node: node.nodeId } } })), { 'data-testid': 'nodes' })
      : empty('No node has reported yet.'));
}

/** Renders one node: its rates over the chosen range and window, and its latest room state. */
export async function nodePage(context) {
  const { view, signal } = context;
  const [nodeId] = context.params;
  const window = WINDOWS.includes(context.query.get('window')) ? context.query.get('window') : '5s';
  const rangeName = context.query.get('range') ?? '15m';
  const rangeSeconds = (RANGES.find(([name]) => name === rangeName) ?? RANGES[1])[1];
  const to = Date.now();
  const from = to - rangeSeconds * 1000;
  document.title = `${nodeId} · rtc-telemetry`;
  const [rates, { nodes }] = await Promise.all([
    api(`/v1/nodes/${encodeURIComponent(nodeId)}/rates${query({ window, from, to })}`, { signal }),
    api('/v1/nodes', { signal }),
  ]);
  if (!context.active()) return;
  const node = nodes.find((n) => n.nodeId === nodeId);
  const points = rates.points;
  const x = points.map((p) => seconds(p.at));
  const last = [...points].reverse().find((p) => p.bpsIn || p.bpsOut) ?? points[points.length - 1];
  const peakIn = Math.max(0, ...points.map((p) => p.bpsIn));
  const peakOut = Math.max(0, ...points.map((p) => p.bpsOut));

  const choose = (label, name, options, value) => h('label', { class: 'inline' }, `${label} `,
    h('select', { name, on: { change: (event) => context.go(`/nodes/${encodeURIComponent(nodeId)}`, { window, range: rangeName, [name]: event.target.value }) } },
      options.map((option) => h('option', { value: option, selected: option === value, text: option }))));

  const rooms = node?.rooms?.rooms ?? [];
  fill(view, 
    h('div', { class: 'page-head' },
      h('div', {},
        h('div', { class: 'crumbs' }, h('a', { href: '#/nodes', text: 'Nodes' }), ' / '),
        h('h1', {}, nodeId, ' ', node ? reporting(node) : badge('unknown', 'left'))),
      node && h('dl', { class: 'meta' },
        h('dt', { text: 'First seen' }), h('dd', {}, timeCell(node.firstSeen)),
        h('dt', { text: 'Last seen' }), h('dd', {}, timeCell(node.lastSeen)))),
    h('section', { class: 'panel', data: { testid: 'node-rates' } },
      h('div', { class: 'panel-head' }, h('h2', { text: 'Rates' }),
        h('div', { class: 'filters' }, choose('Range', 'range', RANGES.map(([name]) => name), rangeName), choose('Window', 'window', WINDOWS, window))),
      h('p', { class: 'muted small', text: `One point per ${window} window; in = what participants send (upstream), out = what they receive (downstream). Each sample's bytes are spread over the seconds it covers, so late reports add no spikes.` }),
      h('dl', { class: 'summary' },
        h('div', {}, h('dt', { text: 'Latest in' }), h('dd', { data: { testid: 'latest-in' }, text: last ? bitrate(last.bpsIn) : '—' })),
        h('div', {}, h('dt', { text: 'Latest out' }), h('dd', { text: last ? bitrate(last.bpsOut) : '—' })),
        h('div', {}, h('dt', { text: 'Peak in' }), h('dd', { text: bitrate(peakIn) })),
        h('div', {}, h('dt', { text: 'Peak out' }), h('dd', { text: bitrate(peakOut) })),
        h('div', {}, h('dt', { text: 'Latest point' }), h('dd', { text: last ? time(last.at) : '—' }))),
      h('div', { class: 'chart-grid wide' },
        chart({
          title: 'Bit rate',
          testid: 'chart-node-bps',
          x,
          height: 240,
          format: bitrate,
          axisFormat: (value) => bitrate(value, true),
          series: [
            { label: 'in', values: points.map((p) => p.bpsIn), color: '#2563eb', fill: 'rgba(37,99,235,0.08)' },
            { label: 'out', values: points.map((p) => p.bpsOut), color: '#d9480f' },
          ],
        }),
        chart({
          title: 'Packet rate',
          testid: 'chart-node-pps',
          x,
          height: 240,
          format: packetRate,
          axisFormat: (value) => packetRate(value, true),
          series: [
            { label: 'in', values: points.map((p) => p.ppsIn), color: '#2563eb' },
            { label: 'out', values: points.map((p) => p.ppsOut), color: '#d9480f' },
          ],
        }))),
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', { text: 'Rooms in the last room-state report' })),
      rooms.length
        ? table([
          { label: 'Room', cell: (room) => (room.id ? h('a', { href: `#/rooms/${encodeURIComponent(room.id)}`, text: room.name || room.id }) : room.name || '—') },
          { label: 'Participants', class: 'num', cell: (room) => number(room.participants?.length ?? null) },
          { label: 'Created', cell: (room) => timeCell(room.createdAt) },
        ], rooms.map((room) => ({ value: room })))
        : empty(node?.rooms ? 'The last report listed no rooms.' : 'This node has sent no room-state report.')));
}
