// The scenario of scenario-core.js, through the client library (clients/js) instead of raw messages:
// tests/test_sockjs_client_browser.py runs it in Chromium on every transport (browser.js).
//
// runLibraryScenario({ gateway, SockJS, baseUrl, transport, username, subject, emit }): `gateway` is
// the library's module. The steps, and what it emits and resolves with, are those of scenario-core.js.

const PASSWORD = 'correct horse battery';

export async function runLibraryScenario({ gateway, SockJS, baseUrl, transport, username, subject = 'hi', emit }) {
  let step = 'start';
  let client = null;
  let requests = 0;
  const events = [];
  let eventArrived = () => {};

  function check(condition, message, detail) {
    if (!condition) throw new Error(detail === undefined ? message : `${message}: ${JSON.stringify(detail)}`);
  }

  async function call(promise) {
    requests += 1;
    return promise;
  }

  async function scenario() {
    step = 'open';
    client = gateway.connect(baseUrl, { SockJS, transports: [transport], sockjs: { timeout: 10000 } });
    await client.ready();
    check(client.transportName === transport, `the library used '${client.transportName}', not '${transport}'`);
    emit({ step, transport: client.transportName });

    step = 'register';
    const created = await call(client.api.createAccount({ body: { username, password: PASSWORD } }));
    check(created.status === 201 && created.body.account.username === username, 'createAccount failed', created);
    emit({ step, status: created.status, account: created.body.account.id });

    step = 'login';
    const login = await call(client.api.createToken({ body: { username, password: PASSWORD } }));
    check(login.status === 201 && typeof login.body.token.value === 'string', 'createToken failed', login);
    const token = login.body.token.value;
    client.setToken(token);
    emit({ step, status: login.status });

    step = 'send email';
    const sent = await call(client.api.sendEmail({ body: { to: ['bob@x.org'], subject, text: 'x' } }));
    check(sent.status === 201 && sent.body.email.subject === subject, 'sendEmail failed', sent);
    const emailId = sent.body.email.id;
    emit({ step, status: sent.status, email: emailId });

    step = 'list emails';
    const listed = await call(client.api.listEmails({ query: { limit: 20 } }));
    check(listed.status === 200 && listed.body.emails.length === 1 && listed.body.emails[0].id === emailId &&
          listed.headers['X-Total-Count'][0] === '1', 'listEmails does not list the email', listed);
    emit({ step, status: listed.status, count: listed.body.emails.length });

    step = 'me';
    const me = await call(client.api.getMe());
    check(me.status === 200 && me.body.account.username === username, 'getMe is not the account', me);
    emit({ step, status: me.status });

    step = 'subscribe';
    const subscription = client.subscribe(token, {
      onEvent: (event) => { events.push(event); eventArrived(); },
    });
    const bindBy = Date.now() + 10000; // the library says it is bound by setting the cursor: poll it, bounded
    while (subscription.cursor === null) {
      check(Date.now() < bindBy, 'not subscribed within 10 s', null);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    check(/^[0-9]+$/.test(subscription.cursor), 'subscribed gave no cursor', subscription.cursor);
    emit({ step, reply: { type: 'subscribed', cursor: subscription.cursor } });

    step = 'event';
    const noteSubject = `${subject} (to myself)`;
    const note = await call(client.api.sendEmail({
      body: { to: [`${username}@localhost`], subject: noteSubject, text: 'x' },
    }));
    check(note.status === 201, 'sendEmail to myself failed', note);
    const isReceipt = (e) => e.type === 'receipt' && e.name === noteSubject;
    while (!events.some(isReceipt)) await new Promise((resolve) => { eventArrived = resolve; });
    const receipt = events.find(isReceipt);
    check(typeof receipt.cursor === 'string' && receipt.labels.includes('inbox'), 'a malformed receipt', receipt);
    emit({ step, type: receipt.type, cursor: receipt.cursor });

    step = 'unsubscribe';
    await subscription.unsubscribe();
    check(!subscription.active, 'the subscription is still active');
    emit({ step, reply: { type: 'unsubscribed' } });

    step = 'bad message';
    let refused = null;
    try {
      await call(client.request('GET', '/', { headers: { 'Bad Name': 'x' } }));
    } catch (e) {
      refused = e;
    }
    check(refused instanceof gateway.GatewayError && refused.code === 'invalid_headers',
      'a malformed request was not refused with invalid_headers', refused && refused.message);
    emit({ step, reply: { type: 'error', code: refused.code } });

    step = 'still usable';
    const again = await call(client.api.getMe());
    check(again.status === 200, 'the session is not usable after the error', again);
    emit({ step, status: again.status });

    step = 'close';
    client.close();
    check(client.state === 'closed', 'the client did not close', client.state);
    emit({ step, code: 1000 });

    return { ok: true, transport, requests, email: emailId, events: events.length };
  }

  try {
    return await scenario();
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    error.step = step;
    if (client) client.close();
    throw error;
  }
}
