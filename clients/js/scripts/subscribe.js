// Tail an account's events with the client library: one JSON line per event on stdout.
//
//   node --experimental-websocket scripts/subscribe.js URL TOKEN [TRANSPORT] [REQUEST_EVERY_MS]
//
// TRANSPORT is a sockjs-client transport (websocket, xhr-streaming, xhr-polling, ...); without one the
// library uses the native WebSocket. Lines: {"subscribed": cursor}, {"event": {...}}, {"state": "open"},
// {"resync": true},
// {"end": "revoked"}, and with REQUEST_EVERY_MS a GET /accounts/me that often: {"requests": n} every 10
// answered, {"error": "..."} for any that failed. The cluster tests (tests/test_cluster.py) run it
// through nginx.

import SockJS from 'sockjs-client';

import { connect } from '../src/index.js';

const [url, token, transport, every] = process.argv.slice(2);
if (!url || !token) {
  process.stderr.write('usage: subscribe.js URL TOKEN [TRANSPORT]\n');
  process.exit(2);
}
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
const options = transport && transport !== 'native'
  ? { SockJS, transports: [transport], backoff: { base: 50, max: 1000 } }
  : { backoff: { base: 50, max: 1000 } };
const client = connect(url, { ...options, token });
client.on('state', ({ state }) => print({ state }));
const subscription = client.subscribe(token, {
  onEvent: (event) => print({ event }),
  onResync: () => print({ resync: true }),
  onEnd: (reason) => print({ end: reason }),
});
// bound once the server gave the subscription a cursor
const bound = setInterval(() => {
  if (subscription.cursor !== null) {
    clearInterval(bound);
    print({ subscribed: subscription.cursor });
  }
}, 10);

let answered = 0;
async function ask() {
  try {
    await client.api.getMe();
    answered += 1;
    if (answered % 10 === 0) print({ requests: answered });
  } catch (error) {
    print({ error: `${error.code || ''} ${error.message}` });
  }
  setTimeout(ask, Number(every));
}
if (every) ask();
process.on('SIGTERM', () => { client.close(); process.exit(0); });
