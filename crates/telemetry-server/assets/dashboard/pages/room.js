// A room: its report at the top (per participant: outcome, connect time, rates, loss, jitter,
// RTT, MOS, issues), its participants (joined, active and left times, state), call quality per
// track and direction (bit rate average and peak, packet loss, jitter, RTT, quality score from
// the coalesced stats windows, issue intervals shaded) and its tracks folded under it, and the
// timeline: the room's issues as bars over its time span, then its analytics events.

import { api, query } from '../api.js';
import {
  h, fill, number, table, timeCell, duration, empty, badge, words, bitrate, ms, percent, score,
  lossFraction, jitterMs, time,
} from '../format.js';
import { chart, windowSegments } from '../charts.js';
import {
  reportTable, issueTimeline, seriesIssues, issueBands, kindLabel, kindBadge, valueText, directionBadge,
} from '../quality.js';

const EVENTS_PAGE = 100;

/** The key of a stats series in the hash (`?series=`). */
function seriesKey(series) {
  return [series.trackSid, series.participantSid, series.direction].join('~');
}

function latest(series) {
  return series.windows[series.windows.length - 1];
}

/** The stats range for a room: from a minute before it started to ten minutes after it ended. */
function statsRange(room) {
  const now = Date.now();
  const from = new Date(room.startedAt).getTime() - 60_000;
  const end = room.endedAt ? new Date(room.endedAt).getTime() + 600_000 : now + 60_000;
  return { from, to: Math.max(Math.min(end, now + 60_000), from + 1000) };
}

function section(title, testid, ...content) {
  return h('section', { class: 'panel', data: testid ? { testid } : undefined },
    h('div', { class: 'panel-head' }, h('h2', { text: title })), ...content);
}

/** A panel folded under its title (a <details>): long lists stay out of the way until asked for. */
function folded(title, testid, open, ...content) {
  return h('details', { class: 'panel fold', data: { testid }, open },
    h('summary', {}, h('h2', { text: title })), ...content);
}

/** Renders the room page. */
export async function roomPage(context) {
  const { view, signal } = context;
  const [sid] = context.params;
  const selected = context.query.get('series') ?? '';
  const detail = await api(`/v1/rooms/${encodeURIComponent(sid)}`, { signal });
  const range = statsRange(detail.room);
  const [stats, events, report] = await Promise.all([
    api(`/v1/stats${query({ roomSid: sid, from: range.from, to: range.to })}`, { signal }),
    api(`/v1/rooms/${encodeURIComponent(sid)}/events${query({ limit: EVENTS_PAGE })}`, { signal }),
    api(`/v1/rooms/${encodeURIComponent(sid)}/report`, { signal }),
  ]);
  if (!context.active()) return;
  const { room, participants, tracks } = detail;
  document.title = `${room.name || room.sid} · rtc-telemetry`;
  const identity = new Map(participants.map((p) => [p.sid, p.identity]));
  const who = (participantSid, fallback) => identity.get(participantSid) || fallback || participantSid || '—';
  const series = stats.series.filter((s) => s.windows.length);
  const issues = report.issues ?? [];
  const openIssues = issues.filter((issue) => !issue.endedAt).length;

  const head = h('div', { class: 'page-head' },
    h('div', {},
      h('div', { class: 'crumbs' }, h('a', { href: '#/rooms', text: 'Rooms' }), ' / '),
      h('h1', {}, room.name || room.sid, ' ', room.endedAt ? badge('ended', 'left') : badge('active'))),
    h('dl', { class: 'meta' },
      h('dt', { text: 'Sid' }), h('dd', { class: 'mono', text: room.sid }),
      h('dt', { text: 'Started' }), h('dd', {}, timeCell(room.startedAt)),
      h('dt', { text: 'Ended' }), h('dd', {}, timeCell(room.endedAt)),
      h('dt', { text: 'Duration' }), h('dd', { text: duration(room.startedAt, room.endedAt) })));

  const participantsTable = participants.length
    ? table([
      { label: 'Identity', key: 'identity', cell: (p) => p.identity || '—' },
      { label: 'Sid', key: 'sid', class: 'mono', cell: (p) => p.sid },
      { label: 'State', key: 'state', cell: (p) => badge(p.state) },
      { label: 'Joined', key: 'joined', cell: (p) => timeCell(p.joinedAt) },
      { label: 'Active', key: 'active', cell: (p) => timeCell(p.activeAt) },
      { label: 'Left', key: 'left', cell: (p) => timeCell(p.leftAt) },
      { label: 'In room', cell: (p) => (p.joinedAt ? duration(p.joinedAt, p.leftAt || room.endedAt) : '—') },
    ], participants.map((p) => ({ value: p, attrs: { data: { sid: p.sid, state: p.state } } })), { 'data-testid': 'participants-table' })
    : empty('No participants.');

  const tracksTable = tracks.length
    ? table([
      { label: 'Track', class: 'mono', cell: (t) => t.sid },
      { label: 'Publisher', cell: (t) => who(t.participantSid) },
      { label: 'Type', cell: (t) => words(t.type) },
      { label: 'Source', cell: (t) => words(t.source) },
      { label: 'MIME', cell: (t) => t.mimeType || '—' },
      { label: 'Published', cell: (t) => timeCell(t.publishedAt) },
      { label: 'Unpublished', cell: (t) => timeCell(t.unpublishedAt) },
    ], tracks.map((t) => ({ value: t, attrs: { data: { sid: t.sid } } })))
    : empty('No tracks.');

  const chosen = series.find((s) => seriesKey(s) === selected);
  const seriesTable = series.length
    ? table([
      { label: 'Track', class: 'mono', cell: (s) => s.trackSid || `(${s.kind})` },
      { label: 'Participant', cell: (s) => who(s.participantSid) },
      { label: 'Direction', cell: (s) => badge(s.direction === 'upstream' ? '↑ upstream' : '↓ downstream', s.direction) },
      { label: 'Kind', class: 'narrow-hide', cell: (s) => (s.mime ? `${s.kind} · ${s.mime}` : s.kind) },
      { label: 'Windows', class: 'num narrow-hide', cell: (s) => number(s.windows.length) },
      { label: 'Latest avg', class: 'num', cell: (s) => bitrate(latest(s).avgBps) },
      { label: 'Latest score', class: 'num', cell: (s) => (s.kind === 'media' ? score(latest(s).score) : '—') },
      {
        label: 'Issues',
        key: 'issues',
        cell: (s) => {
          const own = seriesIssues(s, issues);
          return own.length ? own.map((issue) => kindBadge(issue)) : h('span', { class: 'muted', text: '—' });
        },
      },
      {
        label: 'Charts',
        cell: (s) => h('a', {
          href: `#/rooms/${encodeURIComponent(sid)}?series=${encodeURIComponent(seriesKey(s))}`,
          class: seriesKey(s) === selected ? 'button small active' : 'button small',
          data: { testid: 'open-chart' },
          text: seriesKey(s) === selected ? 'Shown' : 'Show charts',
        }),
      },
    ], series.map((s) => ({ value: s, attrs: { class: seriesKey(s) === selected ? 'selected' : undefined, data: { series: seriesKey(s), track: s.trackSid, direction: s.direction } } })), { 'data-testid': 'series-table' })
    : empty('No stats windows for this room yet: stats are stored at each flush.');

  const eventsBox = h('div', { class: 'timeline-box' });
  const more = h('button', { type: 'button', class: 'secondary', text: 'Load more events', hidden: true });
  let nextCursor = null;
  const addEvents = (page) => {
    eventsBox.append(timeline(page.events, who));
    nextCursor = page.nextCursor;
    more.hidden = !nextCursor;
  };
  if (events.events.length) addEvents(events);
  else eventsBox.append(empty('No events.'));
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      const page = await api(`/v1/rooms/${encodeURIComponent(sid)}/events${query({ limit: EVENTS_PAGE, cursor: nextCursor })}`, { signal });
      if (context.active()) addEvents(page);
    } finally {
      more.disabled = false;
    }
  });

  const quality = folded(`Call quality per track and direction (${series.length})`, 'per-track', Boolean(chosen),
    h('p', { class: 'muted small', text: 'One series per track and direction: upstream is what a participant sends, downstream what it receives. Each flat segment of a chart is one coalesced stats window, from its start to its end; shaded spans are quality issues.' }),
    seriesTable);
  if (chosen) quality.append(seriesCharts(chosen, who, seriesIssues(chosen, issues)));

  // The issue a report row names: its bar on the timeline, brought into view and marked.
  const showIssue = (issue) => {
    const row = view.querySelector(`[data-testid="issue-timeline"] li[data-issue="${CSS.escape(issue.id)}"]`);
    if (!row) return;
    for (const marked of view.querySelectorAll('[data-testid="issue-timeline"] li.marked')) marked.classList.remove('marked');
    row.classList.add('marked');
    row.scrollIntoView({ block: 'center' });
  };
  const reportPanel = h('section', { class: 'panel', data: { testid: 'report' } },
    h('div', { class: 'panel-head' },
      h('h2', {}, 'Report ', report.final ? badge('final', 'info') : badge('live', 'active')),
      h('span', { class: 'muted small', text: `${issues.length} ${issues.length === 1 ? 'issue' : 'issues'}${openIssues ? `, ${openIssues} open` : ''} · media figures over the stored stats windows (p95 of the windows' jitter and RTT)` })),
    reportTable(report, showIssue));

  const timelineStart = new Date(room.startedAt).getTime();
  const timelineEnd = room.endedAt ? new Date(room.endedAt).getTime() : Date.now();
  fill(view, 
    head,
    reportPanel,
    section(`Participants (${participants.length})`, 'participants', participantsTable),
    quality,
    folded(`Tracks (${tracks.length})`, 'tracks', false, tracksTable),
    section('Timeline', 'timeline',
      h('h3', { text: 'Quality issues' }),
      issueTimeline(issues, Math.min(timelineStart, ...issues.map((i) => new Date(i.startedAt).getTime())), timelineEnd, who),
      h('h3', { text: 'Events' }),
      eventsBox, more));
  if (chosen) view.querySelector('[data-testid="series-charts"]')?.scrollIntoView({ block: 'start' });
}

function seriesCharts(series, who, issues) {
  const windows = series.windows;
  const last = latest(series);
  const { x, values } = windowSegments(windows);
  const bands = issueBands(issues);
  const media = series.kind === 'media';
  const title = `${series.trackSid || series.kind} · ${who(series.participantSid)} · ${series.direction}`;
  const summary = h('dl', { class: 'summary', data: { testid: 'latest' } },
    h('div', {}, h('dt', { text: 'Latest window' }), h('dd', {}, `${time(last.start)} – ${time(last.end)}`)),
    h('div', {}, h('dt', { text: 'Avg bit rate' }), h('dd', { data: { testid: 'latest-avg', bps: last.avgBps }, text: bitrate(last.avgBps) })),
    h('div', {}, h('dt', { text: 'Peak bit rate' }), h('dd', { data: { testid: 'latest-peak', bps: last.peakBps }, text: `${bitrate(last.peakBps)}` }),
      h('dd', { class: 'muted small', text: `at ${ms(last.resolutionMs)} resolution` })),
    media && h('div', {}, h('dt', { text: 'Packet loss' }), h('dd', { text: percent(lossFraction(last)) })),
    media && h('div', {}, h('dt', { text: 'Jitter (max)' }), h('dd', { text: ms(jitterMs(last), 1) })),
    media && h('div', {}, h('dt', { text: 'RTT (max)' }), h('dd', { text: ms(last.rttMax) })),
    media && h('div', {}, h('dt', { text: 'Score' }), h('dd', { text: `${score(last.score)} (min ${score(last.minScore)})` })));
  const charts = [
    chart({
      title: 'Bit rate',
      testid: 'chart-bitrate',
      x,
      bands,
      points: false,
      format: bitrate,
      axisFormat: (value) => bitrate(value, true),
      series: [
        { label: 'average', values: values((w) => w.avgBps) },
        { label: 'peak', values: values((w) => w.peakBps), dash: [4, 3] },
      ],
    }),
  ];
  if (media) {
    charts.push(
      chart({
        title: 'Packet loss',
        testid: 'chart-loss',
        x,
        bands,
        points: false,
        format: (value) => `${Number(value).toFixed(value < 1 ? 2 : 1)} %`,
        axisFormat: (value) => `${Number(value.toFixed(2))} %`,
        series: [{ label: 'loss', values: values((w) => lossFraction(w) * 100), color: '#d9480f' }],
      }),
      chart({
        title: 'Jitter (max per window)',
        testid: 'chart-jitter',
        x,
        bands,
        points: false,
        format: (value) => `${Number(value).toFixed(value < 10 ? 1 : 0)} ms`,
        axisFormat: (value) => `${Number(value.toFixed(1))} ms`,
        series: [{ label: 'jitter', values: values(jitterMs), color: '#ae3ec9' }],
      }),
      chart({
        title: 'Round-trip time (max per window)',
        testid: 'chart-rtt',
        x,
        bands,
        points: false,
        format: (value) => `${Math.round(value)} ms`,
        series: [{ label: 'RTT', values: values((w) => w.rttMax), color: '#0b7285' }],
      }),
      chart({
        title: 'Quality score',
        testid: 'chart-score',
        x,
        bands,
        points: false,
        yMin: 0,
        yMax: 5,
        format: (value) => Number(value).toFixed(1),
        series: [
          { label: 'mean', values: values((w) => w.score || null), color: '#2b8a3e' },
          { label: 'min', values: values((w) => w.minScore || null), color: '#e67700', dash: [4, 3] },
          { label: 'median', values: values((w) => w.medianScore || null), color: '#55607a', dash: [1, 3] },
        ],
      }),
    );
  }
  const issueList = issues.length
    ? h('ul', { class: 'series-issues', data: { testid: 'series-issues' } }, issues.map((issue) => h('li', { data: { issue: issue.id } },
      kindBadge(issue), ' ', directionBadge(issue.direction), ' ',
      issue.participantSid === series.participantSid ? '' : `from ${who(issue.participantSid, issue.participantIdentity)}'s upstream · `,
      `${time(issue.startedAt)} – ${issue.endedAt ? time(issue.endedAt) : 'now (open)'} · ${valueText(issue)}`)))
    : h('p', { class: 'muted small', text: 'No quality issue on this series.' });
  return h('div', { class: 'series-charts', data: { testid: 'series-charts' } },
    h('h3', { text: title }),
    summary,
    issueList,
    h('div', { class: 'chart-grid' }, charts));
}

function eventDetails(event, who) {
  const parts = [];
  const participant = event.participant?.identity || (event.participantId ? who(event.participantId) : '')
    || (event.issue ? who(event.issue.participantSid, event.issue.participantIdentity) : '');
  if (participant) parts.push(h('span', { class: 'actor', text: participant }));
  if (event.track) {
    const kind = [event.track.type, event.track.source].filter(Boolean).map(words).join(' ');
    parts.push(h('span', {}, h('span', { class: 'mono', text: event.track.sid || event.trackId || '' }), kind ? ` ${kind}` : ''));
  } else if (event.trackId) {
    parts.push(h('span', { class: 'mono', text: event.trackId }));
  }
  if (event.publisher?.identity) parts.push(`from ${event.publisher.identity}`);
  if (event.mime) parts.push(event.mime);
  if (event.maxSubscribedVideoQuality) parts.push(`max quality ${words(event.maxSubscribedVideoQuality)}`);
  if (event.egressId) parts.push(`egress ${event.egressId}`);
  if (event.ingressId) parts.push(`ingress ${event.ingressId}`);
  if (event.clientInfo?.sdk || event.clientInfo?.os) {
    const client = event.clientInfo;
    parts.push([client.sdk && words(client.sdk), client.os, client.browser].filter(Boolean).join(', '));
  }
  if (event.webhook) {
    // A webhook sent for the room: which, to whom it was about, and how the endpoint answered.
    const webhook = event.webhook;
    parts.push(webhook.participantIdentity ? `${webhook.event} (${webhook.participantIdentity})` : webhook.event);
    if (webhook.httpStatusCode) parts.push(`HTTP ${webhook.httpStatusCode}`);
    if (webhook.errorMessage) parts.push(h('span', { class: 'error', text: webhook.errorMessage }));
  }
  if (event.issue) {
    const issue = event.issue;
    parts.push(h('span', {}, `${kindLabel(issue.kind)} ${issue.direction}`));
    if (issue.trackSid && !event.track && !event.trackId) parts.push(h('span', { class: 'mono', text: issue.trackSid }));
    parts.push(valueText(issue));
    if (issue.affected?.length) parts.push(`${issue.affected.length} affected`);
  }
  if (event.error) parts.push(h('span', { class: 'error', text: event.error }));
  return parts.flatMap((part, index) => (index ? [' · ', part] : [part]));
}

function eventKind(type) {
  if (type === 'QUALITY_ISSUE_STARTED') return 'issue';
  if (type === 'QUALITY_ISSUE_ENDED') return 'issue-closed';
  if (/JOINED|ACTIVE|STARTED|CREATED|PUBLISHED$|SUBSCRIBED$|RESUMED/.test(type) && !/UNPUBLISHED|UNSUBSCRIBED/.test(type)) return 'active';
  if (/LEFT|ENDED|UNPUBLISHED|UNSUBSCRIBED|DELETED/.test(type)) return 'left';
  if (/FAILED|ERROR/.test(type)) return 'dead';
  return 'info';
}

function timeline(events, who) {
  return h('ol', { class: 'timeline', data: { testid: 'events' } },
    events.map((event) => h('li', { data: { type: event.type, issue: event.issue?.id } },
      h('span', { class: 'when' }, timeCell(event.timestamp)),
      h('span', { class: 'what' }, badge(words(event.type), eventKind(event.type ?? ''))),
      h('span', { class: 'details' }, eventDetails(event, who)))));
}
