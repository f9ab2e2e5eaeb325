// Rooms: active and ended, searched by name, a page at a time (the API's nextCursor).

import { api, query } from '../api.js';
import { h, fill, number, table, timeCell, duration, empty, badge } from '../format.js';

const PAGE_SIZE = 25;

/** Cursors of the pages before the current one, per filter, so "Newer" can go back. */
const back = new Map();

/** Renders the rooms list for the hash's `name`, `active` and `cursor`. */
export async function roomsPage(context) {
  const { view, signal, query: params } = context;
  document.title = 'Rooms · rtc-telemetry';
  const name = params.get('name') ?? '';
  const state = params.get('state') ?? 'all';
  const cursor = params.get('cursor') ?? '';
  const active = state === 'active' ? 'true' : state === 'ended' ? 'false' : undefined;
  const filterKey = `${name}\u0000${state}`;
  const stack = back.get(filterKey) ?? [];
  back.clear();
  back.set(filterKey, stack);
  if (!cursor) stack.length = 0;

  const page = await api(`/v1/rooms${query({ name, active, limit: PAGE_SIZE, cursor })}`, { signal });
  if (!context.active()) return;

  const search = h('input', { type: 'search', name: 'name', value: name, placeholder: 'Room name contains…', 'aria-label': 'Search rooms by name' });
  const select = h('select', { name: 'state', 'aria-label': 'Room state' },
    [['all', 'Active and ended'], ['active', 'Active'], ['ended', 'Ended']].map(([value, label]) =>
      h('option', { value, selected: value === state, text: label })));
  const form = h('form', { class: 'filters', role: 'search', on: {
    submit: (event) => {
      event.preventDefault();
      context.go('/rooms', { name: search.value.trim(), state: select.value });
    },
  } }, search, select, h('button', { type: 'submit', text: 'Search' }));
  select.addEventListener('change', () => form.requestSubmit());

  const pager = h('div', { class: 'pager' },
    h('button', { type: 'button', class: 'secondary', disabled: !cursor, text: '← Newer', on: {
      click: () => {
        const previous = stack.pop();
        context.go('/rooms', { name, state, cursor: previous });
      },
    } }),
    h('span', { class: 'muted small', text: cursor ? `page ${stack.length + 2}` : 'page 1' }),
    h('button', { type: 'button', class: 'secondary', disabled: !page.nextCursor, text: 'Older →', data: { testid: 'rooms-next' }, on: {
      click: () => {
        stack.push(cursor);
        context.go('/rooms', { name, state, cursor: page.nextCursor });
      },
    } }));

  fill(view, 
    h('div', { class: 'page-head' }, h('h1', { text: 'Rooms' })),
    form,
    page.rooms.length
      ? table([
        { label: 'Room', key: 'name', cell: (room) => h('a', { href: `#/rooms/${encodeURIComponent(room.sid)}`, text: room.name || '(no name)' }) },
        { label: 'Sid', key: 'sid', class: 'mono', cell: (room) => room.sid },
        { label: 'State', cell: (room) => (room.endedAt ? badge('ended', 'left') : badge('active')) },
        { label: 'Started', cell: (room) => timeCell(room.startedAt) },
        { label: 'Ended', cell: (room) => timeCell(room.endedAt) },
        { label: 'Duration', cell: (room) => duration(room.startedAt, room.endedAt) },
        { label: 'Participants', class: 'num', cell: (room) => number(room.numParticipants) },
        { label: 'Tracks', class: 'num', cell: (room) => number(room.numTracks) },
      ], page.rooms.map((room) => ({ value: room, attrs: { data: { sid: room.sid } } })), { 'data-testid': 'rooms' })
      : empty(name ? `No room whose name contains “${name}”.` : 'No rooms.'),
    pager);
  if (name) {
    search.focus();
    search.setSelectionRange(name.length, name.length);
  }
}
