// The typed API: a method per operation of docs/openapi.yaml (generated into operations.js), each a
// request over the client's session.

import { operations } from './operations.js';

/** Whether `headers` has `name`, in any case. */
export function hasHeader(headers, name) {
  const lower = name.toLowerCase();
  return Object.keys(headers).some((h) => h.toLowerCase() === lower);
}

function randomKey() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Send operation `name` (`op`, from operations.js) through `client`: the path filled in, the query
 * appended, the bearer token and, where the operation takes one, an Idempotency-Key added. */
function call(client, name, op, { path = {}, query = {}, body, headers = {} } = {}, callOptions = {}) {
  let target = op.path.replace(/\{(\w+)\}/g, (_, key) => {
    if (path[key] === undefined) throw new TypeError(`${name}: missing path parameter ${key}`);
    return encodeURIComponent(path[key]);
  });
  const pairs = Object.entries(query).filter(([, v]) => v !== undefined && v !== null);
  if (pairs.length) {
    target += `?${pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`;
  }
  const sent = { ...headers };
  const token = callOptions.token || client.token;
  if (op.auth && token && !hasHeader(sent, 'Authorization')) sent.Authorization = `Bearer ${token}`;
  if (op.headers.includes('Idempotency-Key') && !hasHeader(sent, 'Idempotency-Key')) {
    sent['Idempotency-Key'] = randomKey(); // so a retry after a drop cannot send twice
  }
  if (op.body && body !== undefined) sent['Content-Type'] = 'application/json';
  return client.request(op.method, target, { body: op.body ? body : undefined, headers: sent, ...callOptions });
}

/** The `api` object of `client`: `api.listEmails({ query })`, `api.getEmail({ path: { id } })`, ... */
export function makeApi(client) {
  const api = {};
  for (const [name, op] of Object.entries(operations)) {
    api[name] = (args = {}, callOptions = {}) => call(client, name, op, args, callOptions);
  }
  return api;
}
