// The client: one session to the gateway's /ws, kept open, with requests and subscriptions over it.

import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { GatewayError } from './errors.js';
import { reply } from './reply.js';
import { hasHeader, makeApi } from './api.js';
import { Subscription } from './subscription.js';
import { openTransport } from './transport.js';

/** The close code of a gateway that is restarting: reconnect with no wait. */
const RECONNECT_NOW = 4001;
/** Requests that may be sent again after a drop: they change nothing, or carry an Idempotency-Key. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** The event kinds the server pushes for a subscription. */
const EVENT_TYPES = new Set(['receipt', 'delivery', 'deferred', 'failed']);
const DEFAULTS = {
  path: '/ws',
  timeout: 30000, // ms a request waits for its answer
  maxInflight: 32, // until the server's GET / says otherwise
  backoff: DEFAULT_BACKOFF,
};

export class Client {
  /**
   * Use {@link connect}. Options: SockJS (a sockjs-client constructor; without it the native
   * WebSocket on /ws/websocket), WebSocket (a WebSocket constructor, for Node 20), transports (the
   * SockJS transports to allow), token (sent by the api methods), timeout, backoff {base, max},
   * path ('/ws').
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    this.token = options.token || null;
    this.state = 'connecting';
    this.transportName = null;
    this._listeners = new Map();
    this._transport = null;
    this._queue = []; // calls not sent yet, in order
    this._inflight = new Map(); // id -> call
    this._control = new Map(); // id -> {resolve, reject} of subscribe/unsubscribe
    this._subscriptions = new Set();
    this._nextId = 0;
    this._attempt = 0;
    this._timer = null;
    this._limit = this.options.maxInflight;
    this._online = this._watchOnline();
    this.api = makeApi(this);
    this._open();
  }

  // -- events ------------------------------------------------------------

  /** Listen: 'state' ({state, transport}), 'open', 'close' ({code, reason}). Returns a function that stops it. */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this._listeners.get(name).delete(fn);
  }

  _emit(name, value) {
    for (const fn of this._listeners.get(name) || []) {
      try {
        fn(value);
      } catch (e) {
        setTimeout(() => { throw e; });
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, transport: this.transportName });
  }

  /** Resolves once the session is open (at once if it is). */
  ready() {
    if (this.state === 'open') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(new GatewayError('closed', 'The client is closed'));
    return new Promise((resolve, reject) => {
      const stop = this.on('state', ({ state }) => {
        if (state === 'open') { stop(); resolve(); }
        if (state === 'closed') { stop(); reject(new GatewayError('closed', 'The client is closed')); }
      });
    });
  }

  // -- the connection ----------------------------------------------------

  _open() {
    let transport;
    try {
      transport = openTransport(this.url, this.options, {
        onopen: () => this._opened(transport),
        onmessage: (text) => this._received(text),
        onclose: (why) => this._dropped(transport, why),
      });
    } catch (e) {
      this._setState('closed');
      throw e;
    }
    this._transport = transport;
  }

  _opened(transport) {
    if (transport !== this._transport) return;
    this._attempt = 0;
    this.transportName = transport.name();
    this._setState('open');
    this._emit('open', { transport: this.transportName });
    this._learnLimits();
    for (const subscription of this._subscriptions) subscription._bind();
    this._pump();
  }

  _dropped(transport, why) {
    if (transport !== this._transport) return;
    this._transport = null;
    this._emit('close', why);
    // Calls that were sent: safe ones go again once reopened; writes cannot know their outcome.
    const sent = [...this._inflight.values()].sort((a, b) => a.seq - b.seq);
    this._inflight.clear();
    const again = [];
    for (const call of sent) {
      if (call.retryable) {
        again.push(call);
      } else {
        this._settle(call, null, new GatewayError('closed',
          'The session dropped before the answer came: the outcome is unknown', { outcomeUnknown: true, id: call.id }));
      }
    }
    this._queue.unshift(...again);
    for (const pending of this._control.values()) pending.reject(new GatewayError('closed', 'The session dropped'));
    this._control.clear();
    if (this.state === 'closed') return;
    this._setState('reconnecting');
    // 4001: the gateway is restarting and asks to reconnect at once (a load balancer sends us elsewhere)
    this._scheduleReconnect(why && why.code === RECONNECT_NOW);
  }

  _scheduleReconnect(immediate = false) {
    clearTimeout(this._timer);
    if (this._online && !this._online.isOnline()) return; // the 'online' event brings us back
    const delay = immediate ? 0 : backoffDelay(this._attempt++, this.options.backoff);
    this._timer = setTimeout(() => this._reconnectNow(), delay);
  }

  _reconnectNow() {
    clearTimeout(this._timer);
    if (this.state !== 'reconnecting' || this._transport) return;
    try {
      this._open();
    } catch (e) {
      this._scheduleReconnect();
    }
  }

  _watchOnline() {
    const target = globalThis.window || globalThis;
    const nav = globalThis.navigator;
    if (typeof target.addEventListener !== 'function' || !nav || typeof nav.onLine !== 'boolean') return null;
    const online = () => { this._attempt = 0; this._reconnectNow(); };
    const offline = () => { if (this._transport) this._transport.close(); };
    target.addEventListener('online', online);
    target.addEventListener('offline', offline);
    return {
      isOnline: () => nav.onLine !== false,
      stop: () => { target.removeEventListener('online', online); target.removeEventListener('offline', offline); },
    };
  }

  /** Close for good: every call still waiting is rejected, subscriptions end. */
  close() {
    if (this.state === 'closed') return;
    this._setState('closed');
    clearTimeout(this._timer);
    if (this._online) this._online.stop();
    for (const subscription of this._subscriptions) subscription._stop();
    const sent = [...this._inflight.values()];
    this._inflight.clear();
    for (const call of sent) {
      this._settle(call, null, new GatewayError('closed', 'The client was closed before the answer came',
        { outcomeUnknown: !call.retryable, id: call.id }));
    }
    for (const call of this._queue.splice(0)) {
      this._settle(call, null, new GatewayError('closed', 'The client was closed before the call was sent'));
    }
    const transport = this._transport;
    this._transport = null;
    if (transport) transport.close();
  }

  // -- messages ----------------------------------------------------------

  _send(message) {
    this._transport.send(JSON.stringify(message));
  }

  _received(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (e) {
      return;
    }
    const call = message.id !== undefined ? this._inflight.get(message.id) : undefined;
    if (message.type === 'response' && call) {
      this._inflight.delete(message.id);
      if (message.status === 429 && call.internal !== true) {
        // over the server's limit (lower than ours): wait as it asks, then go again
        this._limit = Math.max(1, this._inflight.size);
        const wait = Number(((message.headers || {})['Retry-After'] || ['1'])[0]) * 1000;
        setTimeout(() => { this._queue.unshift(call); this._pump(); }, wait);
        return;
      }
      this._settle(call, reply(message));
      this._pump();
    } else if (message.type === 'error' && call) {
      this._inflight.delete(message.id);
      this._settle(call, null, new GatewayError(message.code, message.error, { id: message.id }));
      this._pump();
    } else if (message.id !== undefined && this._control.has(message.id)) {
      const pending = this._control.get(message.id);
      this._control.delete(message.id);
      pending.resolve(message);
    } else if (EVENT_TYPES.has(message.type) || message.type === 'unsubscribed') {
      for (const subscription of this._subscriptions) subscription._message(message);
    }
  }

  /** Send a subscribe or unsubscribe; resolves with the answer carrying its id. */
  _controlMessage(message) {
    const id = `c${++this._nextId}`;
    return new Promise((resolve, reject) => {
      this._control.set(id, { resolve, reject });
      this._send({ ...message, id });
    });
  }

  // -- requests ----------------------------------------------------------

  /**
   * Run one API request over the session. Resolves with {status, headers, body} (a JSON body
   * parsed); rejects with a GatewayError for an `error` answer, a timeout, or a closed client.
   * Calls made while (re)connecting wait; calls over the in-flight limit wait on the client.
   */
  request(method, path, { body, headers = {}, timeout = this.options.timeout } = {}) {
    if (this.state === 'closed') return Promise.reject(new GatewayError('closed', 'The client is closed'));
    method = method.toUpperCase();
    return new Promise((resolve, reject) => {
      const call = {
        seq: ++this._nextId, id: null, method, path, body, headers, timeout, resolve, reject, timer: null,
        retryable: SAFE_METHODS.has(method) || hasHeader(headers, 'Idempotency-Key'),
      };
      call.timer = setTimeout(() => this._timedOut(call), timeout);
      this._queue.push(call);
      this._pump();
    });
  }

  _pump() {
    while (this.state === 'open' && this._transport && this._queue.length && this._inflight.size < this._limit) {
      const call = this._queue.shift();
      call.id = `r${++this._nextId}`;
      this._inflight.set(call.id, call);
      const message = { type: 'request', id: call.id, method: call.method, path: call.path, accept_json_body: true };
      if (call.body !== undefined) message.body = call.body;
      if (Object.keys(call.headers).length) message.headers = call.headers;
      this._send(message);
    }
  }

  _timedOut(call) {
    const sent = call.id !== null && this._inflight.get(call.id) === call;
    if (sent) {
      this._inflight.delete(call.id);
      this._pump();
    } else {
      const at = this._queue.indexOf(call);
      if (at < 0) return;
      this._queue.splice(at, 1);
    }
    const unknown = sent && !SAFE_METHODS.has(call.method);
    this._settle(call, null, new GatewayError('timeout',
      `No answer within ${call.timeout} ms${unknown ? ': the outcome is unknown' : ''}`,
      { outcomeUnknown: unknown, id: call.id }));
  }

  _settle(call, value, error) {
    clearTimeout(call.timer);
    if (error) call.reject(error);
    else call.resolve(value);
  }

  async _learnLimits() {
    try {
      const root = await this.request('GET', '/', { timeout: 10000 });
      const limit = root.body && root.body.limits && root.body.limits.ws_max_inflight;
      if (Number.isInteger(limit) && limit > 0) {
        this._limit = limit;
        this._pump();
      }
    } catch (e) {
      // an older server, or a drop: keep the default
    }
  }

  /** Use `token` for the api methods from now on (a login, a renewal). */
  setToken(token) {
    this.token = token;
  }

  // -- subscriptions -----------------------------------------------------

  /**
   * Hear the token's account's events: onEvent(event) gets each once, in order, across
   * reconnects (the library resumes with the last cursor it delivered). Options: events (a list
   * of kinds: receipt, delivery, deferred, failed), detail ('summary', 'message' or 'full': how
   * much of each email an event carries), since (a cursor to start after), onEvent, onResync (the server could not replay
   * what was missed: reload your lists), onEnd(reason) (revoked, account_deleted, invalid_token,
   * expired without getToken), getToken() (a promise of a fresh token: called before the bound
   * one expires, and the subscription moves to it with no gap and no duplicate). One subscription
   * per client: subscribing again replaces it.
   */
  subscribe(token, options = {}) {
    // a session is bound to one account at a time: a new subscription replaces the one before
    for (const earlier of this._subscriptions) earlier._stop();
    const subscription = new Subscription(this, token, options);
    this._subscriptions.add(subscription);
    if (this.state === 'open') subscription._bind();
    return subscription;
  }

  _forget(subscription) {
    this._subscriptions.delete(subscription);
  }
}

/** Connect to a gateway (its base URL, e.g. http://127.0.0.1:5000); see {@link Client} for the options. */
export function connect(url, options = {}) {
  return new Client(url, options);
}
