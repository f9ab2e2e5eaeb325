// The query API client: every request carries the signed-in token, and no request is made
// without one. A 401 or 403 on a read signs the user out with a message saying why.

const TOKEN_KEY = 'rtc-telemetry.token';

/** A failed API request: its HTTP status and the API's message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

/** Thrown when a page asks for data while nobody is signed in; no request was made. */
export class SignedOut extends Error {
  constructor() {
    super('not signed in');
    this.name = 'SignedOut';
  }
}

/** The token of this tab, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** What the sign-in page says for a status the API answered a read with. */
export function authMessage(status) {
  return status === 403 ? 'token lacks the read role' : 'token missing or wrong';
}

let onAuthFailure = () => {};

/** Sets what happens when a read is refused (401, or 403 for lack of the read role). */
export function handleAuthFailure(callback) {
  onAuthFailure = callback;
}

/**
 * Calls the API. `options.admin` marks an admin action: its 403 is the caller's to show
 * (the token may read but not change), not a reason to sign out.
 */
export async function api(path, options = {}) {
  const current = token();
  if (!current) {
    onAuthFailure(401);
    throw new SignedOut();
  }
  const headers = { Authorization: `Bearer ${current}`, Accept: 'application/json' };
  const init = { method: options.method ?? 'GET', headers, cache: 'no-store', signal: options.signal };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (response.status === 401 || (response.status === 403 && !options.admin)) {
    onAuthFailure(response.status);
    throw new ApiError(response.status, authMessage(response.status), body);
  }
  if (!response.ok) {
    const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, body);
  }
  return body;
}

/** Builds a query string from the defined, non-empty values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
