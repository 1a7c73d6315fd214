// The library against real gateways (`gateway serve` processes): run with `npm test`
// (node --experimental-websocket --test), or from pytest (tests/test_js_client.py).

import assert from 'node:assert/strict';
import test from 'node:test';

import SockJS from 'sockjs-client';

import { connect, GatewayError, operations } from '../src/index.js';
import { PASSWORD, smtpSend, startGateway, until } from './harness.js';

const SOCKJS = { SockJS, sockjs: { timeout: 10000 } };

/** A registered account on the client, logged in (the client's token set). */
async function account(client, username) {
  const created = await client.api.createAccount({ body: { username, password: PASSWORD } });
  assert.equal(created.status, 201);
  const login = await client.api.createToken({ body: { username, password: PASSWORD } });
  client.setToken(login.body.token.value);
  return { id: created.body.account.id, token: login.body.token.value };
}

/** Mail `to` over SMTP, retrying while the gateway is away (as a real MTA does). */
async function deliver(gateway, to, subject) {
  await until(async () => {
    try {
      await smtpSend(gateway.smtpPort, to, subject);
      return true;
    } catch (e) {
      return false;
    }
  }, 30000, `the gateway to accept ${subject}`);
}

function eventsInto(list) {
  return (event) => list.push(event);
}

test('every typed method of the spec works against the server', { timeout: 90000 }, async () => {
  const gateway = await startGateway(['--webhook-allow-networks', '127.0.0.0/8']);
  const client = connect(gateway.url, { ...SOCKJS, transports: ['websocket'] });
  const called = new Set();
  const api = new Proxy(client.api, { get: (target, name) => { called.add(name); return target[name]; } });
  try {
    assert.equal((await api.getRoot()).body.name, 'gateway');
    assert.equal((await api.getHealth()).body.store, 'up');
    assert.equal((await api.getLiveness()).body.status, 'ok');
    assert.equal((await api.getReadiness()).body.status, 'ready');
    const { id } = (await api.createAccount({ body: { username: 'alice', password: PASSWORD } })).body.account;
    client.setToken((await api.createToken({ body: { username: 'alice', password: PASSWORD } })).body.token.value);
    assert.equal((await api.getMe()).body.account.id, id);
    assert.equal((await api.updateMe({ body: { display_name: 'Alice' } })).body.account.display_name, 'Alice');
    const bytes = Uint8Array.from([0, 255, 1, 254, 13, 10, 128]);
    const attachment = { filename: 'b.bin', content_type: 'application/octet-stream',
      content_base64: Buffer.from(bytes).toString('base64') };
    const sent = await api.sendEmail({ body: { to: ['alice@localhost'], subject: 'hi', text: 'x',
      attachments: [attachment] } });
    assert.equal(sent.status, 201);
    const email = sent.body.email;
    assert.equal((await api.getEmail({ path: { id: email.id } })).body.email.subject, 'hi');
    assert.match((await api.getEmailRaw({ path: { id: email.id } })).body, /^From: Alice <alice@localhost>\r\n/);
    const part = await api.getEmailAttachment({ path: { id: email.id, n: 0 } });  // binary: base64 on the wire
    assert.deepEqual([part.body instanceof Uint8Array, [...part.body]], [true, [...bytes]]);
    assert.equal((await api.listEmails({ query: { label: 'sent', limit: 5 } })).headers['X-Total-Count'][0], '1');
    assert.equal((await api.updateEmail({ path: { id: email.id }, body: { read: false } })).body.email.read, false);
    const threads = await api.listThreads();
    const thread = threads.body.threads[0];
    assert.equal((await api.getThread({ path: { id: thread.id } })).status, 200);
    assert.equal((await api.updateThread({ path: { id: thread.id }, body: { read: true } })).status, 200);
    const label = (await api.createLabel({ body: { name: 'Work' } })).body.label;
    assert.equal((await api.getLabel({ path: { id: label.id } })).body.label.name, 'Work');
    assert.equal((await api.renameLabel({ path: { id: label.id }, body: { name: 'Job' } })).body.label.name, 'Job');
    assert.ok((await api.listLabels()).body.labels.some((l) => l.id === label.id));
    assert.equal((await api.deleteLabel({ path: { id: label.id } })).status, 200);
    const contact = (await api.createContact({ body: { name: 'Bob', email: 'bob@example.org' } })).body.contact;
    assert.equal((await api.getContact({ path: { id: contact.id } })).body.contact.name, 'Bob');
    assert.equal((await api.updateContact({ path: { id: contact.id }, body: { notes: 'n' } })).body.contact.notes, 'n');
    assert.equal((await api.listContacts({ query: { sort: 'name' } })).body.contacts.length, 1);
    assert.equal((await api.deleteContact({ path: { id: contact.id } })).status, 200);
    const hook = (await api.createWebhook({ body: { url: 'http://127.0.0.1:9/hook', events: ['receipt'] } })).body.webhook;
    assert.ok(hook.secret.startsWith('whsec_'));
    assert.equal((await api.getWebhook({ path: { id: hook.id } })).body.webhook.secret, undefined);
    assert.equal((await api.updateWebhook({ path: { id: hook.id }, body: { description: 'd' } })).body.webhook.description, 'd');
    assert.equal((await api.listWebhooks()).body.webhooks.length, 1);
    assert.equal((await api.testWebhook({ path: { id: hook.id } })).body.delivery.status, 'failed');  // nobody listens there
    assert.equal((await api.listWebhookDeliveries({ path: { id: hook.id } })).body.deliveries.length, 1);
    assert.equal((await api.deleteWebhook({ path: { id: hook.id } })).status, 200);
    const tokens = (await api.listTokens()).body.tokens;
    assert.equal((await api.getToken({ path: { id: tokens[0].id } })).body.token.current, true);
    const renewed = (await api.renewToken()).body.token;
    assert.equal((await api.getMe({}, { token: renewed.value })).status, 200);
    assert.equal((await api.revokeToken({ path: { id: renewed.id } })).status, 200);
    assert.equal((await api.deleteEmail({ path: { id: email.id } })).status, 200);
    const others = (await api.listThreads()).body.threads;
    for (const t of others) assert.equal((await api.deleteThread({ path: { id: t.id } })).status, 200);
    assert.equal((await api.revokeCurrentToken()).status, 200);
    const again = await api.createToken({ body: { username: 'alice', password: PASSWORD } });
    client.setToken(again.body.token.value);
    assert.equal((await api.deleteMe()).status, 200);
    assert.deepEqual([...Object.keys(operations)].filter((name) => !called.has(name)), []);
  } finally {
    client.close();
    await gateway.stop();
  }
});

test('states, calls held while connecting, and errors as typed rejections (native WebSocket)', { timeout: 90000 }, async () => {
  const gateway = await startGateway();
  const client = connect(gateway.url);
  const states = [];
  client.on('state', ({ state }) => states.push(state));
  try {
    assert.equal(client.state, 'connecting');
    const root = client.api.getRoot(); // made before the session is open: held, not refused
    assert.equal((await root).status, 200);
    assert.equal(client.transportName, 'websocket-raw');
    const bad = client.request('GET', '/', { headers: { 'Bad Name': 'x' } });
    await assert.rejects(bad, (e) => e instanceof GatewayError && e.code === 'invalid_headers' && !e.outcomeUnknown);
    const missing = await client.request('GET', '/nowhere');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'not_found');
    client.close();
    assert.deepEqual(states, ['open', 'closed']);
    await assert.rejects(client.api.getRoot(), (e) => e.code === 'closed');
  } finally {
    client.close();
    await gateway.stop();
  }
});

test('a timeout rejects; an unanswered write says its outcome is unknown; close rejects what waits', { timeout: 90000 }, async () => {
  const gateway = await startGateway();
  const client = connect(gateway.url, { ...SOCKJS, transports: ['xhr-streaming'] });
  try {
    await account(client, 'alice');
    gateway.pause(); // the process stops answering; the connection stays up
    const read = client.api.getMe({}, { timeout: 300 });
    const write = client.api.updateMe({ body: { display_name: 'x' } }, { timeout: 300 });
    await assert.rejects(read, (e) => e.code === 'timeout' && e.outcomeUnknown === false);
    await assert.rejects(write, (e) => e.code === 'timeout' && e.outcomeUnknown === true &&
      /outcome is unknown/.test(e.message));
    const waiting = client.api.updateMe({ body: { display_name: 'y' } });
    await until(() => client._inflight.size === 1, 5000, 'the write to be sent'); // sent, and never answered
    client.close();
    await assert.rejects(waiting, (e) => e.code === 'closed' && e.outcomeUnknown === true);
  } finally {
    gateway.resume();
    client.close();
    await gateway.stop();
  }
});

test('a burst of 100 calls over the in-flight limit is queued on the client, never answered 429', { timeout: 90000 }, async () => {
  const gateway = await startGateway(['--ws-max-inflight', '4']);
  const client = connect(gateway.url, { ...SOCKJS, transports: ['websocket'] });
  try {
    await account(client, 'alice');
    const replies = await Promise.all(Array.from({ length: 100 }, () => client.api.getMe()));
    assert.deepEqual([...new Set(replies.map((r) => r.status))], [200]);
  } finally {
    client.close();
    await gateway.stop();
  }
});

test('a gateway restarted while mail flows: every event once, in order, by the automatic resume', { timeout: 90000 }, async () => {
  const gateway = await startGateway();
  const client = connect(gateway.url, { backoff: { base: 50, max: 500 } });
  const events = [];
  const states = [];
  client.on('state', ({ state }) => states.push(state));
  try {
    const { token } = await account(client, 'alice');
    const subscription = client.subscribe(token, { onEvent: eventsInto(events) });
    await until(() => subscription.cursor !== null, 10000, 'subscribed');
    const subjects = Array.from({ length: 30 }, (_, i) => `m${i}`);
    const sending = (async () => {
      for (const subject of subjects) await deliver(gateway, 'alice@localhost', subject);
    })();
    await until(() => events.length >= 10, 20000, 'the first events');
    await gateway.restart(); // while the sender keeps sending
    await sending;
    await until(() => events.length >= subjects.length, 30000, 'every event');
    await deliver(gateway, 'alice@localhost', 'last');
    await until(() => events.some((e) => e.name === 'last'), 10000, 'the last event');
    assert.deepEqual(events.map((e) => e.name), [...subjects, 'last']);
    assert.ok(states.includes('reconnecting') && states.at(-1) === 'open', states.join());
  } finally {
    client.close();
    await gateway.stop();
  }
});

test('token renewal: the subscription moves to a fresh token with no gap and no duplicate', { timeout: 90000 }, async () => {
  const gateway = await startGateway();
  const client = connect(gateway.url, { ...SOCKJS, transports: ['xhr-polling'] });
  const events = [];
  let renewals = 0;
  const ended = [];
  try {
    await account(client, 'alice');
    // a token of 3 s: renewed about a second before it expires
    const short = (await client.api.createToken({ body: { username: 'alice', password: PASSWORD, expires_in: 3 } }))
      .body.token.value;
    let current = short;
    const subscription = client.subscribe(short, {
      onEvent: eventsInto(events),
      onEnd: (reason) => ended.push(reason),
      getToken: async () => {
        renewals += 1;
        current = (await client.api.renewToken({ body: { expires_in: 60 } }, { token: current })).body.token.value;
        return current;
      },
    });
    await until(() => subscription.cursor !== null, 10000, 'subscribed');
    // mail flows, one message every 50 ms, until a few have arrived after the renewal
    const subjects = [];
    let afterRenewal = 0;
    for (let i = 0; afterRenewal < 5; i += 1) {
      assert.ok(i < 200, 'the token was never renewed');
      subjects.push(`r${i}`);
      await deliver(gateway, 'alice@localhost', `r${i}`);
      if (subscription.token !== short) afterRenewal += 1;
      await new Promise((resolve) => setTimeout(resolve, 50)); // pacing the sender, not waiting for a state
    }
    await until(() => subscription.token !== short, 10000, 'the renewed binding');
    for (const subject of ['after1', 'after2']) {
      subjects.push(subject);
      await deliver(gateway, 'alice@localhost', subject);
    }
    await until(() => events.length >= subjects.length, 10000, 'every event');
    assert.deepEqual(events.map((e) => e.name), subjects);
    assert.ok(renewals >= 1);
    assert.deepEqual(ended, []);
  } finally {
    client.close();
    await gateway.stop();
  }
});

test('onResync when the server cannot replay what was missed', { timeout: 90000 }, async () => {
  const gateway = await startGateway(['--event-history', '5']);
  const client = connect(gateway.url);
  try {
    const { token } = await account(client, 'alice');
    for (let i = 0; i < 12; i += 1) await deliver(gateway, 'alice@localhost', `old${i}`);
    let resyncs = 0;
    const events = [];
    client.subscribe(token, { since: '1', onResync: () => { resyncs += 1; }, onEvent: eventsInto(events) });
    await until(() => resyncs === 1, 10000, 'onResync');
    await deliver(gateway, 'alice@localhost', 'new');
    await until(() => events.some((e) => e.name === 'new'), 10000, 'the new event');
  } finally {
    client.close();
    await gateway.stop();
  }
});

test('delivery status and detail: a send that cannot be relayed comes as a failed event with the row fields', { timeout: 90000 }, async () => {
  const gateway = await startGateway([]);
  const client = connect(gateway.url);
  try {
    const { token } = await account(client, 'alice');
    const events = [];
    const subscription = client.subscribe(token, { events: ['failed'], detail: 'message', onEvent: eventsInto(events) });
    await until(() => subscription.cursor !== null, 10000, 'the subscription');
    const sent = await client.api.sendEmail({ body: { to: ['dan@example.org'], subject: 'Out', text: 'no relay here' } });
    await until(() => events.length === 1, 10000, 'the failed event');
    const [failed] = events;
    assert.equal(failed.type, 'failed');
    assert.equal(failed.id, sent.body.email.id);
    assert.deepEqual(failed.recipients, [{ recipient: 'dan@example.org', code: null, text: 'no SMTP relay configured for external mail', permanent: true }]);
    assert.equal(failed.snippet, 'no relay here');
    assert.deepEqual(failed.to, ['dan@example.org']);
  } finally {
    client.close();
    await gateway.stop();
  }
});
