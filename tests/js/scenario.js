#!/usr/bin/env node
// The gateway's /ws endpoint driven by the real sockjs-client in Node, on one forced transport.
//
//   node tests/js/scenario.js <base_url> <transport> <username>
//
// e.g. `node tests/js/scenario.js http://127.0.0.1:5000 xhr-streaming alice`.  Runs
// scenario-core.js: prints one JSON line per step ({"step": ...}) and then one result line
// ({"ok": true, ...}).  On failure the result line is {"ok": false, "step": ..., "error": ...},
// the same message goes to stderr and the exit status is 1; a usage error exits with 2.
// Everything is bounded by SCENARIO_TIMEOUT_MS (default 20000) so it never hangs.
// SCENARIO_SUBJECT (default "hi") is the subject of the email it sends.
'use strict';

const SockJS = require('sockjs-client');
const runScenario = require('./scenario-core.js');

// The transports sockjs-client offers in Node (the others need a browser: see browser.js).
const TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource'];

const [baseUrl, transport, username] = process.argv.slice(2);
if (!baseUrl || !TRANSPORTS.includes(transport) || !username) {
  process.stderr.write(`usage: node scenario.js <base_url> <${TRANSPORTS.join('|')}> <username>\n`);
  process.exit(2);
}
const timeoutMs = Number(process.env.SCENARIO_TIMEOUT_MS || 20000);
const subject = process.env.SCENARIO_SUBJECT || 'hi';

let lastStep = 'start';

function emit(line) {
  if (line.step) {
    lastStep = line.step;
  }
  process.stdout.write(JSON.stringify(line) + '\n');
}

function finish(code) {
  // Exit only once stdout has been handed over (it may be a pipe).
  process.stdout.write('', () => process.exit(code));
}

let finished = false;

function failed(step, message) {
  if (finished) {
    return;
  }
  finished = true;
  const error = `${transport}: step '${step}' failed: ${message}`;
  emit({ ok: false, transport, step, error });
  process.stderr.write(error + '\n');
  finish(1);
}

const overall = setTimeout(() => failed(`after ${lastStep}`, `timed out after ${timeoutMs} ms`), timeoutMs);
process.on('uncaughtException', (err) => failed('?', `uncaught exception: ${err && err.stack || err}`));
process.on('unhandledRejection', (err) => failed('?', `unhandled rejection: ${err && err.stack || err}`));

runScenario({ SockJS, baseUrl, transport, username, subject, emit }).then((result) => {
  clearTimeout(overall);
  finished = true;
  emit(result);
  finish(0);
}, (err) => {
  clearTimeout(overall);
  failed(err.step, err.message);
});
