// Call quality on the page: quality issues (their kind, direction, worst value against the
// threshold), the issues table of the overview, a room report's figures, and issue intervals as
// bands on a room's timeline and on its track charts. Names in issues come from SFUs: text only.

import { h, table, timeCell, duration, badge, number, bitrate, ms, empty } from './format.js';
import { seconds } from './charts.js';

const KINDS = {
  packet_loss: { label: 'packet loss', unit: (value) => `${number(value, 1)} %`, under: false },
  jitter: { label: 'jitter', unit: (value) => ms(value, 1), under: false },
  rtt: { label: 'RTT', unit: (value) => ms(value), under: false },
  low_score: { label: 'low score', unit: (value) => number(value, 2), under: true },
  no_media: { label: 'no media', unit: () => 'nothing sent', under: false },
};

/** The kind of an issue in words (`packet_loss` → "packet loss"). */
export function kindLabel(kind) {
  return KINDS[kind]?.label ?? String(kind ?? '—').replaceAll('_', ' ');
}

/** The worst value of an issue against its threshold: "20.0 % > 5.0 %", "2.10 < 3.00". */
export function valueText(issue) {
  const kind = KINDS[issue.kind];
  if (!kind) return `${issue.value} (threshold ${issue.threshold})`;
  if (issue.kind === 'no_media') return kind.unit();
  return `${kind.unit(issue.value)} ${kind.under ? '<' : '>'} ${kind.unit(issue.threshold)}`;
}

/** A direction badge: ↑ upstream (what a participant sends), ↓ downstream (what it receives). */
export function directionBadge(direction) {
  return badge(direction === 'upstream' ? '↑ upstream' : '↓ downstream', direction);
}

/** An issue's kind as a badge, red while open. */
export function kindBadge(issue) {
  return badge(kindLabel(issue.kind), issue.endedAt ? 'issue-closed' : 'issue');
}

function roomLink(issue) {
  return h('a', { href: `#/rooms/${encodeURIComponent(issue.roomSid)}`, text: issue.roomName || issue.roomSid });
}

/** The overview's table of open issues (`GET /v1/issues?open=true`), newest first. */
export function issuesTable(issues) {
  if (!issues.length) return empty('No open quality issues.');
  const rows = [...issues].sort((a, b) => new Date(b.startedAt) - new Date(a.startedAt));
  return table([
    { label: 'Kind', key: 'kind', cell: kindBadge },
    { label: 'Direction', key: 'direction', cell: (issue) => directionBadge(issue.direction) },
    { label: 'Participant', key: 'participant', cell: (issue) => issue.participantIdentity || issue.participantSid },
    { label: 'Track', key: 'track', class: 'mono', cell: (issue) => issue.trackSid || '—' },
    { label: 'Since', key: 'since', cell: (issue) => [timeCell(issue.startedAt), h('span', { class: 'muted small', text: ` (${duration(issue.startedAt)})` })] },
    { label: 'Worst vs threshold', key: 'value', class: 'num', cell: valueText },
    { label: 'Affected', key: 'affected', class: 'num', cell: (issue) => number(issue.affected?.length ?? 0) },
    { label: 'Room', key: 'room', cell: roomLink },
  ], rows.map((issue) => ({ value: issue, attrs: { data: { issue: issue.id, room: issue.roomSid } } })), { 'data-testid': 'open-issues' });
}

function dual(up, down) {
  return h('span', { class: 'dual' },
    h('span', { data: { dir: 'up' }, title: 'upstream (sent)' }, '↑ ', up),
    h('span', { data: { dir: 'down' }, title: 'downstream (received)' }, '↓ ', down));
}

/** The figures of one direction, "—" where it carried no media. */
function figure(direction, pick) {
  return direction && Number(direction.bytes) > 0 ? pick(direction) : '—';
}

function mos(direction) {
  return figure(direction, (d) => (d.mosAvg === null || d.mosAvg === undefined ? '—' : number(d.mosAvg, 2)));
}

/** The room report's table (`GET /v1/rooms/{sid}/report`): one row per participant. */
export function reportTable(report, onIssue) {
  if (!report.participants.length) return empty('No participants.');
  return table([
    { label: 'Participant', key: 'identity', cell: (p) => p.identity || p.sid },
    { label: 'Outcome', key: 'outcome', cell: (p) => badge(p.outcome, p.outcome === 'aborted' ? 'aborted' : 'active') },
    { label: 'Connect', key: 'connect', class: 'num', cell: (p) => ms(p.connectMs) },
    { label: 'Up rate', key: 'up-rate', class: 'num', cell: (p) => figure(p.upstream, (d) => bitrate(d.avgBps)) },
    { label: 'Down rate', key: 'down-rate', class: 'num', cell: (p) => figure(p.downstream, (d) => bitrate(d.avgBps)) },
    { label: 'Loss', key: 'loss', class: 'num', cell: (p) => dual(figure(p.upstream, (d) => `${number(d.lossPct, 2)} %`), figure(p.downstream, (d) => `${number(d.lossPct, 2)} %`)) },
    { label: 'Jitter p95', key: 'jitter', class: 'num', cell: (p) => dual(figure(p.upstream, (d) => ms(d.jitterP95Ms, 1)), figure(p.downstream, (d) => ms(d.jitterP95Ms, 1))) },
    { label: 'RTT p95', key: 'rtt', class: 'num', cell: (p) => dual(figure(p.upstream, (d) => ms(d.rttP95Ms)), figure(p.downstream, (d) => ms(d.rttP95Ms))) },
    { label: 'MOS', key: 'mos', class: 'num', cell: (p) => dual(mos(p.upstream), mos(p.downstream)) },
    {
      label: 'Issues',
      key: 'issues',
      cell: (p) => (p.issues.length
        ? h('span', { class: 'issue-list' }, p.issues.map((issue) => h('button', {
          type: 'button', class: 'link', data: { issue: issue.id }, on: { click: () => onIssue?.(issue) },
          title: `${kindLabel(issue.kind)} ${issue.direction} on ${issue.trackSid}: ${valueText(issue)}`,
        }, kindBadge(issue))))
        : h('span', { class: 'muted', text: 'none' })),
    },
  ], report.participants.map((p) => ({ value: p, attrs: { data: { sid: p.sid, issues: p.issues.length } } })), { 'data-testid': 'report-table' });
}

/**
 * The room's issues as bars on its time span (`from`..`to`, milliseconds): one row per issue,
 * open ones running to `to`.
 */
export function issueTimeline(issues, from, to, who) {
  if (!issues.length) return empty('No quality issues in this room.');
  const span = Math.max(to - from, 1);
  const at = (value) => Math.min(Math.max((value - from) / span, 0), 1) * 100;
  const rows = issues.map((issue) => {
    const start = new Date(issue.startedAt).getTime();
    const end = issue.endedAt ? new Date(issue.endedAt).getTime() : to;
    const bar = h('span', {
      class: issue.endedAt ? 'issue-bar' : 'issue-bar open',
      title: `${kindLabel(issue.kind)}: ${new Date(start).toLocaleTimeString()} – ${issue.endedAt ? new Date(end).toLocaleTimeString() : 'still open'}`,
      data: { testid: 'issue-bar', start: issue.startedAt, end: issue.endedAt ?? '' },
    });
    // Positions through the CSSOM: the page's policy forbids inline style attributes, not this.
    bar.style.left = `${at(start)}%`;
    bar.style.width = `${Math.max(at(end) - at(start), 0.5)}%`;
    return h('li', { data: { issue: issue.id } },
      h('span', { class: 'issue-label' },
        kindBadge(issue), ' ', directionBadge(issue.direction), ' ',
        h('span', { class: 'actor', text: who(issue.participantSid, issue.participantIdentity) }), ' ',
        h('span', { class: 'muted small', text: `${valueText(issue)} · ${issue.endedAt ? duration(issue.startedAt, issue.endedAt) : `open for ${duration(issue.startedAt)}`}${issue.affected?.length ? ` · ${issue.affected.length} affected` : ''}` })),
      h('span', { class: 'issue-track' }, bar));
  });
  return h('div', { class: 'issue-timeline', data: { testid: 'issue-timeline' } },
    h('ol', {}, rows),
    h('div', { class: 'issue-axis muted small' },
      h('span', { text: new Date(from).toLocaleTimeString() }),
      h('span', { text: new Date(to).toLocaleTimeString() })));
}

/**
 * The issues of a stats series: those on its own track and direction, and, on a subscriber's
 * downstream, the upstream issues of the track it receives that reached it.
 */
export function seriesIssues(series, issues) {
  return issues.filter((issue) => issue.trackSid === series.trackSid && (
    (issue.participantSid === series.participantSid && issue.direction === series.direction)
    || (series.direction === 'downstream' && issue.direction === 'upstream' && issue.affected?.includes(series.participantSid))));
}

/** Chart bands (Unix seconds) for issues; open ones run to `now`. */
export function issueBands(issues, now = Date.now()) {
  return issues.map((issue) => ({
    from: seconds(issue.startedAt),
    to: issue.endedAt ? seconds(issue.endedAt) : now / 1000,
    open: !issue.endedAt,
  }));
}
