// Webhooks: outbox health, endpoints, deliveries with their status and attempts, and for a
// token with the admin role, retry of one delivery and replay of a time range.

import { api, query, ApiError } from '../api.js';
import { h, fill, number, table, timeCell, empty, badge, words } from '../format.js';

const PAGE_SIZE = 50;
const POLL_MS = 5000;

function missing(error) {
  return error instanceof ApiError && error.status === 404;
}

function missingNotice() {
  return h('p', { class: 'notice', data: { testid: 'webhook-api-missing' },
    text: 'webhook API missing: this service does not serve /v1/webhooks yet.' });
}

function list(body, name) {
  if (Array.isArray(body)) return body;
  return body?.[name] ?? [];
}

function adminNote(session) {
  return session.admin ? null : h('p', { class: 'muted small', data: { testid: 'admin-note' },
    text: 'Retry and replay need a token with the admin role; this one can only read.' });
}

function outboxStats(overview) {
  const webhooks = overview?.webhooks;
  const cell = (label, id, value) => h('div', { class: 'stat' },
    h('div', { class: 'stat-label', text: label }),
    h('div', { class: 'stat-value', data: { testid: id }, text: value }));
  if (!webhooks) return h('div', { class: 'stats' }, cell('Outbox', 'outbox', 'n/a'));
  return h('div', { class: 'stats' },
    cell('Pending', 'outbox-pending', number(webhooks.pending)),
    cell('Delivered', 'outbox-delivered', number(webhooks.delivered)),
    cell('Dead', 'outbox-dead', number(webhooks.dead)));
}

function statusBadge(status) {
  return badge(status ?? 'unknown', status === 'delivered' ? 'active' : status === 'dead' ? 'dead' : 'pending');
}

function lastResult(delivery) {
  // The error names the status when there was one; a success has only the status.
  if (delivery.lastError) return h('span', { class: 'error', text: delivery.lastError });
  if (delivery.lastStatusCode) return `HTTP ${delivery.lastStatusCode}`;
  return h('span', { class: 'muted', text: '—' });
}

/** An endpoint's URL without its scheme, for a narrow column. */
function shortUrl(url) {
  return String(url ?? '').replace(/^https?:\/\//, '');
}

/** Renders the webhooks page and refreshes its deliveries while it is shown. */
export async function webhooksPage(context) {
  const { view, signal, session } = context;
  document.title = 'Webhooks · rtc-telemetry';
  const status = context.query.get('status') ?? '';
  const endpointId = context.query.get('endpoint') ?? '';
  const event = context.query.get('event') ?? '';
  const cursor = context.query.get('cursor') ?? '';

  const overview = await context.refreshOverview(signal);
  let endpoints;
  try {
    endpoints = list(await api('/v1/webhooks/endpoints', { signal }), 'endpoints');
  } catch (error) {
    if (!missing(error)) throw error;
    endpoints = null;
  }
  if (!context.active()) return;

  const message = h('p', { class: 'message', role: 'status', data: { testid: 'webhooks-message' } });
  const say = (text, kind = 'info') => {
    message.textContent = text;
    message.className = `message ${kind}`;
  };
  const endpointName = (id) => shortUrl(endpoints?.find((e) => e.id === id)?.url) || id;

  const deliveriesBox = h('div', { data: { testid: 'deliveries' } }, h('p', { class: 'muted', text: 'Loading deliveries…' }));
  const pager = h('div', { class: 'pager' });
  let refresh = null;

  const retry = async (delivery, button) => {
    button.disabled = true;
    say(`Retrying ${delivery.id}…`);
    try {
      await api(`/v1/webhooks/deliveries/${encodeURIComponent(delivery.id)}/retry`, { method: 'POST', admin: true, signal });
      say(`Delivery ${delivery.id} queued again.`, 'ok');
      await loadDeliveries();
      // Follow the new attempt for a few seconds.
      for (const wait of [700, 1500, 3000]) {
        clearTimeout(refresh);
        await new Promise((resolve) => { refresh = setTimeout(resolve, wait); });
        if (!context.active()) return;
        await loadDeliveries();
      }
    } catch (error) {
      if (!context.active()) return;
      if (error instanceof ApiError && error.status === 403) say('token lacks the admin role: cannot retry', 'error');
      else say(`Retry failed: ${error.message}`, 'error');
      button.disabled = false;
    }
  };

  const loadDeliveries = async () => {
    let body;
    try {
      body = await api(`/v1/webhooks/deliveries${query({ status, endpointId, event, limit: PAGE_SIZE, cursor })}`, { signal });
    } catch (error) {
      if (!missing(error)) throw error;
      fill(deliveriesBox, missingNotice());
      return;
    }
    if (!context.active()) return;
    const deliveries = list(body, 'deliveries');
    const columns = [
      { label: 'Created', cell: (d) => timeCell(d.createdAt) },
      { label: 'Event', cell: (d) => h('a', { href: `#/webhooks/deliveries/${encodeURIComponent(d.id)}`, text: d.event || '—' }) },
      { label: 'Endpoint', class: 'clip', cell: (d) => endpointName(d.endpointId) },
      { label: 'Status', key: 'status', cell: (d) => statusBadge(d.status) },
      { label: 'Attempts', key: 'attempts', class: 'num', cell: (d) => number(d.attempts) },
      { label: 'Last result', cell: lastResult },
      { label: 'Next attempt / delivered', cell: (d) => (d.status === 'delivered' ? timeCell(d.deliveredAt) : timeCell(d.nextAttemptAt)) },
    ];
    if (session.admin) {
      columns.push({
        label: 'Action',
        cell: (d) => (d.status === 'delivered'
          ? h('span', { class: 'muted', text: '—' })
          : h('button', { type: 'button', class: 'small', data: { testid: 'retry' }, text: 'Retry', on: { click: (e) => retry(d, e.currentTarget) } })),
      });
    }
    fill(deliveriesBox, deliveries.length
      ? table(columns, deliveries.map((d) => ({ value: d, attrs: { data: { id: d.id, status: d.status } } })), { 'data-testid': 'deliveries-table' })
      : empty(status || endpointId || event ? 'No delivery matches these filters.' : 'No deliveries yet.'));
    fill(pager, 
      cursor ? h('a', { class: 'button secondary', href: '#/webhooks', text: '← First page' }) : null,
      body?.nextCursor ? h('a', { class: 'button secondary', href: `#/webhooks${query({ status, endpoint: endpointId, event, cursor: body.nextCursor })}`, text: 'Older →' }) : null);
  };

  const statusSelect = h('select', { name: 'status', 'aria-label': 'Status' },
    [['', 'Any status'], ['pending', 'Pending'], ['delivered', 'Delivered'], ['dead', 'Dead']].map(([value, label]) =>
      h('option', { value, selected: value === status, text: label })));
  const endpointSelect = h('select', { name: 'endpoint', 'aria-label': 'Endpoint' },
    h('option', { value: '', text: 'Any endpoint' }),
    (endpoints ?? []).map((e) => h('option', { value: e.id, selected: e.id === endpointId, text: e.url })));
  const eventInput = h('input', { type: 'search', name: 'event', value: event, placeholder: 'Event, like room_started', 'aria-label': 'Event' });
  const filters = h('form', { class: 'filters', on: {
    submit: (e) => {
      e.preventDefault();
      context.go('/webhooks', { status: statusSelect.value, endpoint: endpointSelect.value, event: eventInput.value.trim() });
    },
  } }, statusSelect, endpointSelect, eventInput, h('button', { type: 'submit', text: 'Filter' }));
  statusSelect.addEventListener('change', () => filters.requestSubmit());
  endpointSelect.addEventListener('change', () => filters.requestSubmit());

  const endpointsPanel = h('section', { class: 'panel', data: { testid: 'endpoints' } },
    h('div', { class: 'panel-head' }, h('h2', { text: 'Endpoints' })),
    endpoints === null ? missingNotice()
      : endpoints.length ? table([
        { label: 'Id', class: 'mono', cell: (e) => e.id },
        { label: 'URL', class: 'clip', cell: (e) => e.url },
        { label: 'Signing', cell: (e) => e.signing },
        { label: 'Events', cell: (e) => (e.includeEvents?.length ? `only ${e.includeEvents.join(', ')}`
          : e.excludeEvents?.length ? `all but ${e.excludeEvents.join(', ')}` : 'all') },
        { label: 'Enabled', cell: (e) => (e.enabled === false ? badge('disabled', 'left') : badge('enabled', 'active')) },
      ], endpoints.map((e) => ({ value: e })))
        : empty('No endpoints: add them in the config file or with POST /v1/webhooks/endpoints.'));

  fill(view, 
    h('div', { class: 'page-head' }, h('h1', { text: 'Webhooks' })),
    outboxStats(overview),
    adminNote(session),
    endpointsPanel,
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', { text: 'Deliveries' })),
      filters, message, deliveriesBox, pager),
    session.admin && endpoints !== null ? replayPanel(endpoints, context, say, loadDeliveries) : null);

  await loadDeliveries();
  const timer = setInterval(() => {
    loadDeliveries().catch(() => {});
  }, POLL_MS);
  context.onCleanup(() => {
    clearInterval(timer);
    clearTimeout(refresh);
  });
}

/** `datetime-local` values are local time; the API takes RFC 3339. */
function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function replayPanel(endpoints, context, say, reload) {
  const now = new Date();
  const endpoint = h('select', { name: 'endpointId', required: true, 'aria-label': 'Endpoint' },
    endpoints.map((e) => h('option', { value: e.id, text: e.url })));
  const since = h('input', { type: 'datetime-local', name: 'since', required: true, value: localInput(new Date(now - 3600_000)) });
  const until = h('input', { type: 'datetime-local', name: 'until', required: true, value: localInput(new Date(now.getTime() + 60_000)) });
  const status = h('select', { name: 'status', 'aria-label': 'Deliveries to replay' },
    [['dead', 'Dead deliveries'], ['delivered', 'Delivered ones (send again)'], ['', 'All']].map(([value, label]) =>
      h('option', { value, text: label })));
  const button = h('button', { type: 'submit', text: 'Replay' });
  const form = h('form', { class: 'replay', on: {
    submit: async (event) => {
      event.preventDefault();
      const body = { endpointId: endpoint.value, since: new Date(since.value).toISOString(), until: new Date(until.value).toISOString() };
      if (status.value) body.status = status.value;
      button.disabled = true;
      try {
        const result = await api('/v1/webhooks/replay', { method: 'POST', body, admin: true, signal: context.signal });
        say(`Replay queued ${number(result?.requeued ?? 0)} deliveries again.`, 'ok');
        await reload();
      } catch (error) {
        if (error instanceof ApiError && error.status === 403) say('token lacks the admin role: cannot replay', 'error');
        else say(`Replay failed: ${error.message}`, 'error');
      } finally {
        button.disabled = false;
      }
    },
  } },
  h('label', {}, 'Endpoint', endpoint),
  h('label', {}, 'From (local time)', since),
  h('label', {}, 'Until (local time)', until),
  h('label', {}, 'Which', status),
  button);
  return h('section', { class: 'panel', data: { testid: 'replay' } },
    h('div', { class: 'panel-head' }, h('h2', { text: 'Replay a time range' })),
    h('p', { class: 'muted small', text: 'Queues again the deliveries to one endpoint created in the range, with their original event ids.' }),
    form);
}

/** Renders one delivery with every attempt. */
export async function deliveryPage(context) {
  const { view, signal } = context;
  const [id] = context.params;
  document.title = `${id} · rtc-telemetry`;
  let body;
  try {
    body = await api(`/v1/webhooks/deliveries/${encodeURIComponent(id)}`, { signal });
  } catch (error) {
    if (!missing(error)) throw error;
    fill(view, h('h1', { text: id }), missingNotice());
    return;
  }
  if (!context.active()) return;
  const delivery = body.delivery ?? body;
  // The detail adds every attempt: an array (under `attempts`, or beside a count of them).
  const attempts = [body, delivery].flatMap((object) => ['attempts', 'attemptLog', 'history']
    .map((name) => object?.[name]).filter(Array.isArray))[0] ?? [];
  const fields = [
    ['Id', delivery.id], ['Event', delivery.event], ['Event id', delivery.eventId], ['Endpoint', delivery.endpointId],
    ['Status', statusBadge(delivery.status)], ['Attempts', number(Array.isArray(delivery.attempts) ? delivery.attempts.length : delivery.attempts)],
    ['Created', timeCell(delivery.createdAt)], ['Next attempt', timeCell(delivery.nextAttemptAt)],
    ['Delivered', timeCell(delivery.deliveredAt)], ['Last result', lastResult(delivery)],
  ];
  const keys = [...new Set(attempts.flatMap((attempt) => Object.keys(attempt)))];
  const isTime = (key) => /At$|^at$|time/i.test(key);
  fill(view, 
    h('div', { class: 'page-head' },
      h('div', {},
        h('div', { class: 'crumbs' }, h('a', { href: '#/webhooks', text: 'Webhooks' }), ' / '),
        h('h1', {}, words(delivery.event), ' ', statusBadge(delivery.status)))),
    h('section', { class: 'panel' },
      h('dl', { class: 'meta grid' }, fields.flatMap(([label, value]) => [h('dt', { text: label }), h('dd', {}, value ?? '—')]))),
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', { text: `Attempts (${attempts.length})` })),
      attempts.length
        ? table(keys.map((key) => ({
          label: words(key.replace(/([a-z])([A-Z])/g, '$1_$2')),
          cell: (attempt) => (isTime(key) ? timeCell(attempt[key]) : attempt[key] === null || attempt[key] === undefined ? '—' : String(attempt[key])),
        })), attempts.map((attempt) => ({ value: attempt })))
        : empty('No attempt yet.')));
}
