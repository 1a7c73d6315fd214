// The scenario the sockjs-client tests drive, in Node (scenario.js) and in Chromium (browser.js).
//
// runScenario({ SockJS, baseUrl, transport, username, subject, emit }) opens a SockJS session
// on the one forced transport, tunnels a registration, a login and a few API calls, subscribes,
// mails itself and waits for the pushed receipt event, unsubscribes, sends a message that is
// not JSON and checks the session still works.  It calls
// emit() with one object per step ({step, ...}) and resolves with the result line
// ({ok: true, ...}); on failure it closes the session and rejects with an Error whose `step`
// says where.  A UMD module: require() it in Node, or load it with a <script> (window.runScenario).
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory();
  } else {
    root.runScenario = factory();
  }
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const PASSWORD = 'correct horse battery';
  // Server pushed events an account may get at any time once subscribed; skipped while waiting.
  const EVENT_TYPES = new Set(['delivery', 'receipt']);

  function sameObject(actual, expected) {
    return JSON.stringify(actual, Object.keys(actual).sort()) === JSON.stringify(expected, Object.keys(expected).sort());
  }

  return function runScenario({ SockJS, baseUrl, transport, username, subject = 'hi', emit }) {
    let step = 'start';
    let sock = null;
    const events = [];
    let fail;
    const failed = new Promise((_, reject) => { fail = reject; });

    function check(condition, message, detail) {
      if (!condition) {
        throw new Error(detail === undefined ? message : `${message}: ${JSON.stringify(detail)}`);
      }
    }

    // -- receiving -----------------------------------------------------------------

    const inbox = [];
    let wake = null;

    function received(e) {
      check(typeof e.data === 'string', 'message data is not a string', e.data);
      let message;
      try {
        message = JSON.parse(e.data);
      } catch (_) {
        throw new Error(`message is not JSON: ${e.data}`);
      }
      check(message !== null && typeof message === 'object' && !Array.isArray(message) && typeof message.type === 'string',
        'message is not a JSON object with a type', message);
      inbox.push(message);
      if (wake) {
        wake();
      }
    }

    // The next message that `matches`; events in between are kept aside, anything else fails.
    async function expect(what, matches) {
      for (;;) {
        while (inbox.length) {
          const message = inbox.shift();
          if (matches(message)) {
            return message;
          }
          check(EVENT_TYPES.has(message.type), `unexpected message while waiting for ${what}`, message);
          events.push(message);
        }
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
      }
    }

    // -- sending -------------------------------------------------------------------

    let sequence = 0;

    async function request(method, path, { body, token } = {}) {
      const id = `${transport}-${++sequence}`;
      const message = { type: 'request', id, method, path, headers: {} };
      if (body !== undefined) {
        message.body = JSON.stringify(body);
        message.headers['Content-Type'] = 'application/json';
      }
      if (token !== undefined) {
        message.headers.Authorization = `Bearer ${token}`;
      }
      sock.send(JSON.stringify(message));
      const response = await expect(`the response to ${method} ${path}`, (m) => m.type === 'response' && m.id === id);
      check(typeof response.status === 'number' && typeof response.body === 'string' &&
            response.headers !== null && typeof response.headers === 'object', 'malformed response', response);
      let json = null;
      try {
        json = JSON.parse(response.body);
      } catch (_) { /* checked by the caller */ }
      return { status: response.status, headers: response.headers, body: response.body, json };
    }

    const notAnEvent = (m) => !EVENT_TYPES.has(m.type);

    // The next message that is not an event (answers to control messages have no id).
    async function control(message, what) {
      sock.send(JSON.stringify(message));
      return expect(what, notAnEvent);
    }

    // -- the scenario ----------------------------------------------------------------

    function open() {
      return new Promise((resolve, reject) => {
        // `timeout`: sockjs-client otherwise gives a transport only ~2 x (300 ms + the /info
        // round trip) to open, which a loaded CI machine can miss; with a single allowed
        // transport that ends the connection ("All transports failed").
        sock = new SockJS(`${baseUrl}/ws`, null, { transports: [transport], timeout: 10000 });
        sock.onopen = () => resolve();
        sock.onclose = (e) => reject(new Error(`closed before opening: ${e.code} ${e.reason}`));
        sock.onmessage = (e) => {
          try {
            received(e);
          } catch (err) {
            fail(err);
          }
        };
      });
    }

    async function scenario() {
      step = 'open';
      await open();
      sock.onclose = (e) => fail(new Error(`the session closed: ${e.code} ${e.reason}`));
      check(sock.transport === transport, `sockjs-client used '${sock.transport}' instead of the forced '${transport}'`);
      emit({ step, transport: sock.transport });

      step = 'register';
      const created = await request('POST', '/accounts', { body: { username, password: PASSWORD } });
      check(created.status === 201 && created.json && created.json.account &&
            created.json.account.username === username, 'POST /accounts did not create the account', created);
      emit({ step, status: created.status, account: created.json.account.id });

      step = 'login';
      const login = await request('POST', '/tokens', { body: { username, password: PASSWORD } });
      check(login.status === 201 && login.json && login.json.token && typeof login.json.token.value === 'string',
        'POST /tokens did not return a token', login);
      const token = login.json.token.value;
      emit({ step, status: login.status });

      step = 'send email';
      const sent = await request('POST', '/emails', { body: { to: ['bob@x.org'], subject, text: 'x' }, token });
      check(sent.status === 201 && sent.json && sent.json.email && sent.json.email.subject === subject,
        'POST /emails did not send the email', sent);
      const emailId = sent.json.email.id;
      emit({ step, status: sent.status, email: emailId });

      step = 'list emails';
      const listed = await request('GET', '/emails?limit=20', { token });
      check(listed.status === 200 && listed.json && Array.isArray(listed.json.emails) &&
            listed.json.emails.length === 1 && listed.json.emails[0].id === emailId &&
            listed.json.emails[0].subject === subject &&
            sameObject(listed.headers['X-Total-Count'] || [], ['1']), 'GET /emails?limit=20 does not list the email', listed);
      emit({ step, status: listed.status, count: listed.json.emails.length });

      step = 'me';
      const me = await request('GET', '/accounts/me', { token });
      check(me.status === 200 && me.json && me.json.account && me.json.account.username === username &&
            sameObject(me.headers['Content-Type'] || [], ['application/json; charset=utf-8']),
        'GET /accounts/me is not the account', me);
      emit({ step, status: me.status });

      step = 'subscribe';
      const subscribed = await control({ type: 'subscribe', token }, "the answer to 'subscribe'");
      check(subscribed.type === 'subscribed' && /^[0-9]+$/.test(subscribed.cursor) && Object.keys(subscribed).length === 2,
        "'subscribe' was not answered with 'subscribed' and a cursor", subscribed);
      emit({ step, reply: subscribed });

      step = 'event';
      const noteSubject = `${subject} (to myself)`;
      const note = await request('POST', '/emails', {
        body: { to: [`${username}@localhost`], subject: noteSubject, text: 'x' }, token,
      });
      check(note.status === 201, 'POST /emails to myself failed', note);
      const receipt = await expect('the receipt of the email sent to myself',
        (m) => m.type === 'receipt' && m.name === noteSubject);
      check(typeof receipt.id === 'string' && typeof receipt.thread === 'string' && typeof receipt.cursor === 'string' &&
            Array.isArray(receipt.labels) && receipt.labels.includes('inbox'), 'a malformed receipt event', receipt);
      emit({ step, type: receipt.type, cursor: receipt.cursor });

      step = 'unsubscribe';
      const unsubscribed = await control({ type: 'unsubscribe' }, "the answer to 'unsubscribe'");
      check(sameObject(unsubscribed, { type: 'unsubscribed' }), "'unsubscribe' was not answered with 'unsubscribed'",
        unsubscribed);
      emit({ step, reply: unsubscribed });

      step = 'bad message';
      sock.send('{not json');
      const error = await expect('the error for a message that is not JSON', notAnEvent);
      check(error.type === 'error' && error.code === 'invalid_json' && typeof error.error === 'string' && error.error &&
            !('id' in error), 'a message that is not JSON did not get an invalid_json error', error);
      emit({ step, reply: error });

      step = 'still usable';
      const again = await request('GET', '/accounts/me', { token });
      check(again.status === 200 && again.json && again.json.account && again.json.account.username === username,
        'the session is not usable after the error', again);
      const notSubscribed = await control({ type: 'unsubscribe' }, "the answer to a second 'unsubscribe'");
      check(notSubscribed.type === 'error' && notSubscribed.code === 'not_subscribed',
        "a second 'unsubscribe' did not get a not_subscribed error", notSubscribed);
      emit({ step, status: again.status, reply: notSubscribed });

      step = 'close';
      const closed = await new Promise((resolve) => {
        sock.onclose = resolve;
        sock.close(1000, 'done');
      });
      check(closed.code === 1000, 'the session did not close cleanly', { code: closed.code, reason: closed.reason });
      emit({ step, code: closed.code });

      return { ok: true, transport, requests: sequence, email: emailId, events: events.length };
    }

    return Promise.race([scenario(), failed]).catch((err) => {
      const error = err instanceof Error ? err : new Error(String(err));
      error.step = step;
      if (sock) {
        sock.onclose = sock.onmessage = null;
        try { sock.close(); } catch (_) { /* already closing */ }
      }
      throw error;
    });
  };
}));
