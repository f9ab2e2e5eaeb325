// Building elements (text is always set as text, never parsed as HTML: names come from SFUs)
// and showing values in human units and the browser's local time.

/**
 * Creates an element. `attrs` keys: `class`, `text`, `data` (an object of data-* values; null
 * and undefined ones skipped),
 * `on` (an object of event listeners), `hidden`, anything else as an attribute.
 * Children are nodes, strings (as text) or nested arrays; null and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'text') element.textContent = value;
    else if (name === 'data') {
      for (const [key, v] of Object.entries(value)) if (v !== undefined && v !== null) element.dataset[key] = v;
    }
    else if (name === 'on') for (const [event, fn] of Object.entries(value)) element.addEventListener(event, fn);
    else if (name === 'hidden') element.hidden = Boolean(value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

/** Replaces the children of `element` (null and false are skipped, as in `h`). */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A number with at most `digits` fraction digits, grouped for reading. */
export function number(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '—';
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/**
 * A bit rate in bit/s as kbit/s, Mbit/s or Gbit/s with 3 significant digits; `compact` drops
 * trailing zeros (for chart axes).
 */
export function bitrate(bps, compact = false) {
  if (bps === null || bps === undefined || Number.isNaN(Number(bps))) return '—';
  const value = Number(bps);
  if (value === 0) return '0 bit/s';
  const units = [[1e9, 'Gbit/s'], [1e6, 'Mbit/s'], [1e3, 'kbit/s']];
  for (const [scale, unit] of units) {
    if (Math.abs(value) >= scale) return `${significant(value / scale, compact)} ${unit}`;
  }
  return `${significant(value, compact)} bit/s`;
}

/** A packet rate. */
export function packetRate(pps, compact = false) {
  if (pps === null || pps === undefined) return '—';
  return `${significant(Number(pps), compact)} pkt/s`;
}

function significant(value, compact = false) {
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return compact ? String(Number(value.toFixed(digits))) : value.toFixed(digits);
}

/** Milliseconds. */
export function ms(value, digits = 0) {
  if (value === null || value === undefined) return '—';
  return `${number(value, digits)} ms`;
}

/** A fraction (0..1) as a percentage. */
export function percent(fraction, digits = 2) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return '—';
  return `${(fraction * 100).toFixed(digits)} %`;
}

/** A quality score (0..5). */
export function score(value) {
  if (value === null || value === undefined || value === 0) return '—';
  return Number(value).toFixed(2);
}

/** The loss fraction of a stats window: lost over sent (received plus lost). */
export function lossFraction(window) {
  const lost = Number(window.packetsLost ?? 0);
  const total = Number(window.packets ?? 0) + lost;
  return total > 0 ? lost / total : 0;
}

/** Jitter: windows carry microseconds (LiveKit's `jitter`, `livekit_jitter_us`). */
export function jitterMs(window) {
  return Number(window.jitterMax ?? 0) / 1000;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

/** A time (RFC 3339 or milliseconds) in the browser's local time; the date only if not today. */
export function time(value) {
  if (value === null || value === undefined || value === '') return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeOnly.format(date) : dateTime.format(date);
}

/** A time element: local time shown, the exact UTC time in its tooltip. */
export function timeCell(value) {
  if (value === null || value === undefined || value === '') return h('span', { class: 'muted', text: '—' });
  return h('time', { datetime: value, title: new Date(value).toISOString(), text: time(value) });
}

/** A duration between two times (RFC 3339), or up to now when `end` is empty. */
export function duration(start, end) {
  if (!start) return '—';
  const millis = (end ? new Date(end) : new Date()) - new Date(start);
  if (!Number.isFinite(millis) || millis < 0) return '—';
  const seconds = Math.round(millis / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** An enum-like name (`PARTICIPANT_JOINED`, `TRACK_TYPE_VIDEO`) in words. */
export function words(name) {
  if (name === null || name === undefined || name === '') return '—';
  return String(name).toLowerCase().replaceAll('_', ' ');
}

/** A state badge. */
export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${String(kind).toLowerCase()}`, text });
}

/** A table whose rows turn into cards on a narrow screen: each cell carries its column name. */
export function table(columns, rows, attrs = {}) {
  const head = h('thead', {}, h('tr', {}, columns.map((column) => h('th', { scope: 'col', text: column.label, class: column.class }))));
  const body = h('tbody', {}, rows.map((row) => h('tr', row.attrs ?? {}, columns.map((column) => {
    const content = column.cell(row.value);
    // One wrapper, so that a cell is two grid items (label, value) when rows are cards.
    return h('td', { 'data-label': column.label, class: column.class, data: column.key ? { col: column.key } : undefined },
      h('span', { class: 'cell' }, content));
  }))));
  const element = h('table', { class: 'table cards', ...attrs }, head, body);
  return h('div', { class: 'table-wrap' }, element);
}

/** A short message in place of a table with no rows. */
export function empty(text) {
  return h('p', { class: 'empty muted', text });
}
