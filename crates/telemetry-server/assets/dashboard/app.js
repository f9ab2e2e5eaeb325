// The dashboard's shell: sign-in, hash routing (#/rooms/RM_x) between pages, and the session
// (the token's API key and roles, from GET /v1/overview). Nothing is fetched and nothing but the
// sign-in form is shown until a token is given; a refused read returns to the sign-in form.

import { api, ApiError, SignedOut, token, setToken, clearToken, handleAuthFailure, authMessage } from './api.js';
import { destroyCharts } from './charts.js';
import { h } from './format.js';
import { overviewPage } from './pages/overview.js';
import { roomsPage } from './pages/rooms.js';
import { roomPage } from './pages/room.js';
import { nodesPage, nodePage } from './pages/nodes.js';
import { webhooksPage, deliveryPage } from './pages/webhooks.js';

const signin = document.getElementById('signin');
const signinForm = document.getElementById('signin-form');
const signinError = document.getElementById('signin-error');
const tokenInput = document.getElementById('token');
const topbar = document.getElementById('topbar');
const view = document.getElementById('view');
const who = document.getElementById('who');

/** What the pages share: the session's principal and the latest overview. */
const session = {
  principal: null,
  overview: null,
  get admin() {
    return Boolean(this.principal?.roles?.includes('admin'));
  },
};

const routes = [
  [/^\/?$/, 'overview', overviewPage],
  [/^\/rooms$/, 'rooms', roomsPage],
  [/^\/rooms\/([^/]+)$/, 'rooms', roomPage],
  [/^\/nodes$/, 'nodes', nodesPage],
  [/^\/nodes\/([^/]+)$/, 'nodes', nodePage],
  [/^\/webhooks$/, 'webhooks', webhooksPage],
  [/^\/webhooks\/deliveries\/([^/]+)$/, 'webhooks', deliveryPage],
];

let current = null;

function showSignIn(message) {
  stopPage();
  session.principal = null;
  session.overview = null;
  topbar.hidden = true;
  view.hidden = true;
  view.replaceChildren();
  signin.hidden = false;
  signinError.hidden = !message;
  signinError.textContent = message ?? '';
  document.title = 'Sign in · rtc-telemetry';
  tokenInput.focus();
}

function stopPage() {
  if (current) {
    current.controller.abort();
    for (const cleanup of current.cleanups) cleanup();
    current = null;
  }
  destroyCharts();
}

handleAuthFailure((status) => {
  clearToken();
  showSignIn(authMessage(status));
});

/** Fetches the overview (which also names the token's key and roles) into the session. */
async function refreshOverview(signal) {
  const overview = await api('/v1/overview', { signal });
  session.overview = overview;
  session.principal = overview.principal ?? null;
  const roles = session.principal?.roles?.join(', ');
  who.textContent = session.principal ? `${session.principal.key} (${roles})` : '';
  return overview;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const split = raw.indexOf('?');
  const path = split < 0 ? raw : raw.slice(0, split);
  return { path, query: new URLSearchParams(split < 0 ? '' : raw.slice(split + 1)) };
}

/** Navigates to `path` with `params` as the hash's query; `replace` keeps history short. */
function go(path, params = {}, replace = false) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  const hash = `#${path}${text ? `?${text}` : ''}`;
  if (replace) {
    history.replaceState(null, '', hash);
    route();
  } else if (location.hash !== hash) {
    location.hash = hash;
  } else {
    route();
  }
}

async function route() {
  if (!token()) {
    showSignIn(null);
    return;
  }
  stopPage();
  signin.hidden = true;
  topbar.hidden = false;
  view.hidden = false;
  const { path, query } = parseHash();
  const match = routes.map(([pattern, nav, page]) => [path.match(pattern), nav, page]).find(([m]) => m);
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', Boolean(match && link.dataset.nav === match[1]));
  }
  const controller = new AbortController();
  const page = { controller, cleanups: [] };
  current = page;
  view.replaceChildren(h('p', { class: 'muted loading', text: 'Loading…' }));
  if (!match) {
    view.replaceChildren(h('h1', { text: 'Not found' }), h('p', {}, 'No page here. ', h('a', { href: '#/', text: 'Overview' })));
    return;
  }
  const [m, , render] = match;
  const context = {
    view,
    params: m.slice(1).map((part) => decodeURIComponent(part)),
    query,
    signal: controller.signal,
    session,
    go,
    refreshOverview,
    onCleanup: (cleanup) => page.cleanups.push(cleanup),
    active: () => current === page && !controller.signal.aborted,
  };
  try {
    if (!session.principal) await refreshOverview(controller.signal);
    if (!context.active()) return;
    await render(context);
  } catch (error) {
    if (!context.active() || error instanceof SignedOut || error?.name === 'AbortError') return;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
    view.replaceChildren(
      h('h1', { text: 'Something went wrong' }),
      h('p', { class: 'error', role: 'alert', text: error instanceof ApiError ? `${error.status}: ${error.message}` : String(error) }),
    );
  }
}

signinForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  let value = tokenInput.value.trim().replace(/^bearer\s+/i, '');
  if (!value) {
    showSignIn('token missing or wrong');
    return;
  }
  setToken(value);
  tokenInput.value = '';
  value = '';
  session.principal = null;
  try {
    await refreshOverview();
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) {
      clearToken();
      showSignIn(`cannot reach the API: ${error.message}`);
    }
    return;
  }
  signinError.hidden = true;
  if (!location.hash || location.hash === '#') go('/', {}, true);
  else route();
});

document.getElementById('sign-out').addEventListener('click', () => {
  clearToken();
  showSignIn(null);
});

window.addEventListener('hashchange', route);
route();
