// The live console: log in, watch the inbox and sent mail change as events arrive, compose, try any
// API call, and watch the raw events with their cursors. Everything goes through the client library
// (/client/index.js) over one session; the transport can be switched, and a gateway restart is
// survived by the library's reconnect and resume.
import { connect, GatewayError } from '/client/index.js';

const $ = (id) => document.getElementById(id);
const SOCKJS_TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource', 'iframe-eventsource',
  'iframe-htmlfile', 'jsonp-polling'];

let client = null;
let subscription = null;
let token = null;
let folder = 'inbox';

function show(element, text, ok = false) {
  element.textContent = text;
  element.classList.toggle('ok', ok);
}

function errorText(e) {
  return e instanceof GatewayError ? `${e.code}: ${e.message}` : String(e && e.message || e);
}

// -- the connection ------------------------------------------------------------

function open(choice, since = null) {
  if (client) client.close();
  const options = choice === 'native' ? {} : { SockJS: window.SockJS, transports: [choice], sockjs: { timeout: 10000 } };
  client = connect(location.origin, options);
  client.on('state', ({ state }) => {
    $('state').textContent = state;
    $('state').className = `state ${state}`;
    $('transport').textContent = state === 'open' ? `over ${client.transportName}` : '';
  });
  if (token) {
    client.setToken(token);
    subscribe(since);
  }
}

function subscribe(since) {
  subscription = client.subscribe(token, {
    since: since || undefined,
    onEvent: (event) => {
      logEvent(event);
      if ((event.type === 'receipt' && folder === 'inbox') || (event.type === 'delivery' && folder === 'sent')) {
        loadFolder();
      }
    },
    onResync: () => { logLine('resync: events were missed; lists reloaded'); loadFolder(); },
    onEnd: (reason) => logLine(`subscription ended: ${reason}`),
    getToken: async () => {
      const renewed = await client.api.renewToken();
      token = renewed.body.token.value;
      client.setToken(token);
      return token;
    },
  });
}

function logLine(text) {
  const item = document.createElement('li');
  item.textContent = text;
  $('event-log').prepend(item);
}

function logEvent(event) {
  logLine(`${event.cursor}  ${event.type}  ${event.name || '(no subject)'}  [${event.labels.join(', ')}]`);
  $('cursor').textContent = `cursor ${event.cursor}`;
}

// -- logging in ------------------------------------------------------------------

async function login(register) {
  const username = $('username').value.trim();
  const password = $('password').value;
  try {
    if (register) {
      const created = await client.api.createAccount({ body: { username, password } });
      if (created.status !== 201) throw new Error(created.body.message);
    }
    const reply = await client.api.createToken({ body: { username, password } });
    if (reply.status !== 201) throw new Error(reply.body.message);
    token = reply.body.token.value;
    client.setToken(token);
    const me = await client.api.getMe();
    $('who').textContent = me.body.account.address;
    $('auth').hidden = true;
    $('app').hidden = false;
    subscribe(null);
    await loadFolder();
  } catch (e) {
    show($('auth-message'), errorText(e));
  }
}

// -- the mailbox -----------------------------------------------------------------

async function loadFolder() {
  const reply = await client.api.listEmails({ query: { label: folder, limit: 50 } });
  if (reply.status !== 200) return;
  $('total').textContent = `${reply.headers['X-Total-Count'][0]} in ${folder}`;
  const list = $('emails');
  list.replaceChildren(...reply.body.emails.map((email) => {
    const item = document.createElement('li');
    item.dataset.id = email.id;
    if (!email.read) item.classList.add('unread');
    const subject = document.createElement('div');
    subject.className = 'subject';
    subject.textContent = email.subject || '(no subject)';
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = `${folder === 'sent' ? `to ${email.to.join(', ')}` : `from ${email.from}`} · ` +
      `${email.status} · ${email.created.replace('T', ' ').slice(0, 19)}`;
    item.append(subject, meta);
    return item;
  }));
}

function switchFolder(name) {
  folder = name;
  $('show-inbox').classList.toggle('active', name === 'inbox');
  $('show-sent').classList.toggle('active', name === 'sent');
  loadFolder();
}

async function send(event) {
  event.preventDefault();
  const to = $('to').value.split(',').map((a) => a.trim()).filter(Boolean);
  try {
    const reply = await client.api.sendEmail({ body: { to, subject: $('subject').value, text: $('text').value } });
    if (reply.status !== 201) throw new Error(reply.body.message);
    show($('compose-message'), 'Sent.', true);
    $('compose-form').reset();
    if (folder === 'sent') loadFolder();
  } catch (e) {
    show($('compose-message'), errorText(e));
  }
}

// -- trying a call ---------------------------------------------------------------

async function tryCall(event) {
  event.preventDefault();
  const method = $('try-method').value;
  const text = $('try-body').value.trim();
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    if (text) headers['Content-Type'] = 'application/json';
    const reply = await client.request(method, $('try-path').value, { body: text || undefined, headers });
    $('try-status').textContent = `${reply.status}`;
    $('try-headers').textContent = Object.entries(reply.headers).map(([k, v]) => `${k}: ${v.join(', ')}`).join('\n');
    $('try-response').textContent = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body, null, 2);
  } catch (e) {
    $('try-status').textContent = errorText(e);
    $('try-headers').textContent = '';
    $('try-response').textContent = '';
  }
}

// -- wiring ----------------------------------------------------------------------

function offerTransports() {
  for (const name of SOCKJS_TRANSPORTS) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = `SockJS ${name}`;
    $('transport-choice').append(option);
  }
}

/** sockjs-client, loaded from the gateway's --ws-sockjs-url the first time a SockJS transport is chosen. */
function loadSockJS() {
  if (window.SockJS) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = document.querySelector('meta[name=sockjs-url]').content;
    script.onload = () => resolve();
    script.onerror = () => reject(new Error(`sockjs-client could not be loaded from ${script.src}`));
    document.head.append(script);
  });
}

async function chooseTransport() {
  const choice = $('transport-choice').value;
  try {
    if (choice !== 'native') await loadSockJS();
    open(choice, subscription ? subscription.cursor : null);
  } catch (e) {
    $('transport').textContent = `${e.message}: staying on ${client.transportName}`;
    $('transport-choice').value = 'native';
  }
}

$('auth-form').addEventListener('submit', (e) => { e.preventDefault(); login(false); });
$('register').addEventListener('click', () => login(true));
$('show-inbox').addEventListener('click', () => switchFolder('inbox'));
$('show-sent').addEventListener('click', () => switchFolder('sent'));
$('compose-form').addEventListener('submit', send);
$('try-form').addEventListener('submit', tryCall);
$('transport-choice').addEventListener('change', chooseTransport);
offerTransports();
open('native');
window.consoleState = () => ({ state: client.state, transport: client.transportName, folder });
