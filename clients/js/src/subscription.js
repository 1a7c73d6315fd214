// A subscription: the events of one account, each once and in order, across reconnects and token renewals.

import { GatewayError } from './errors.js';

/** Compare two cursors of one account: numbers when both are digit strings (SQLite's), else as text (RethinkDB's sort so). */
export function compareCursors(a, b) {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The `exp` of a JWT, in ms since the epoch (null when it has none or is not a JWT). */
export function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = typeof atob === 'function' ? atob(part) : Buffer.from(part, 'base64').toString('binary');
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch (e) {
    return null;
  }
}

/** How long before expiry a token is renewed: a minute, or a tenth of what is left for short ones. */
function renewLead(left) {
  return Math.min(60000, Math.max(1000, left / 10));
}

export class Subscription {
  constructor(client, token, options) {
    this.client = client;
    this.token = token;
    this.events = options.events || null;
    this.detail = options.detail || null;
    this.onEvent = options.onEvent || (() => {});
    this.onResync = options.onResync || (() => {});
    this.onEnd = options.onEnd || (() => {});
    this.getToken = options.getToken || null;
    /** The cursor of the last event delivered (or the one `subscribed` gave before any). */
    this.cursor = options.since || null;
    this.active = true;
    this._binding = null; // the bind in progress
    this._renewTimer = null;
  }

  /** Stop: the server is told, and no further event is delivered. */
  async unsubscribe() {
    this._stop();
    if (this.client.state === 'open') {
      try {
        await this.client._controlMessage({ type: 'unsubscribe' });
      } catch (e) {
        // dropped meanwhile: the session, and the binding with it, is gone anyway
      }
    }
  }

  _stop() {
    this.active = false;
    clearTimeout(this._renewTimer);
    this.client._forget(this);
  }

  /** (Re)bind on the open session: after each (re)connect, and to move to a new token. */
  _bind() {
    if (!this.active) return Promise.resolve();
    const binding = this._subscribe().catch((e) => {
      if (e instanceof GatewayError && e.code === 'closed') return; // rebound on the next open
      throw e;
    });
    this._binding = binding;
    return binding;
  }

  async _subscribe() {
    const message = { type: 'subscribe', token: this.token };
    if (this.events) message.events = this.events;
    if (this.detail) message.detail = this.detail;
    if (this.cursor !== null) message.since = this.cursor;
    const answer = await this.client._controlMessage(message);
    if (!this.active) return;
    if (answer.type === 'subscribed') {
      if (this.cursor === null) this.cursor = answer.cursor;
      if (answer.recovered === false) this.onResync();
      this._scheduleRenewal();
      return;
    }
    if (answer.code === 'invalid_cursor') {
      // not a cursor of this server's (a new database): start from its present, and reload
      this.cursor = null;
      this.onResync();
      await this._subscribe();
    } else if (answer.code === 'invalid_token' && this.getToken) {
      await this._renew();
    } else {
      this._end(answer.code || 'error');
    }
  }

  _scheduleRenewal() {
    clearTimeout(this._renewTimer);
    const expires = tokenExpiry(this.token);
    if (!this.getToken || expires === null) return;
    const left = expires - Date.now();
    this._renewTimer = setTimeout(() => this._renew().catch(() => {}), Math.max(0, left - renewLead(left)));
  }

  /** Get a fresh token and move the binding to it, resuming after the last cursor: no gap, no duplicate. */
  async _renew() {
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this._end('expired');
      return;
    }
    if (!this.active) return;
    this.token = token;
    if (this.client.state === 'open') await this._bind();
  }

  _end(reason) {
    if (!this.active) return;
    this._stop();
    this.onEnd(reason);
  }

  _message(message) {
    if (!this.active) return;
    if (message.type === 'unsubscribed') {
      if (message.reason === 'expired' && this.getToken) {
        this._renew().catch(() => {});
      } else if (message.reason) {
        this._end(message.reason);
      }
      return;
    }
    if (this.cursor !== null && compareCursors(message.cursor, this.cursor) <= 0) return; // had it
    this.cursor = message.cursor;
    this.onEvent(message);
  }
}
