#!/usr/bin/env node
// One headless Chromium, and the browser scripts (browser.js, offline.js, cors.js) run in this one Node
// process in turn, instead of each starting Node, playwright-core and a browser of its own (about a
// second each time):
//
//   node tests/js/chromium-server.js
//
// Prints the browser's endpoint as one line. Then each line it reads is a job,
// {"script": "browser.js", "args": [...], "env": {...}}: the script runs with those arguments and that
// environment (over this process's), connected to this browser (CHROMIUM_ENDPOINT), its pages in a
// context of their own; one line answers it, {"code": ..., "stdout": "...", "stderr": "..."}: what the
// script run as a command would have exited with and printed. When stdin closes, the browser closes.
'use strict';

const path = require('node:path');
const readline = require('node:readline');
const { launchServer } = require('./chromium.js');

const SCRIPTS = ['browser.js', 'offline.js', 'cors.js'];
let current = null; // the stderr of the job running now

// a late failure of a job's browser connection must not end the process (nor go unsaid)
process.on('unhandledRejection', (err) => {
  const text = `unhandled rejection: ${err && err.stack || err}\n`;
  if (current) current.push(text);
  else process.stderr.write(text);
});

async function runJob(line, endpoint) {
  const { script, args, env } = JSON.parse(line);
  if (!SCRIPTS.includes(script)) return { code: 2, stdout: '', stderr: `no such script: ${script}\n` };
  current = [];
  try {
    const { run } = require(path.join(__dirname, script));
    const result = await run(args, { ...process.env, ...env, CHROMIUM_ENDPOINT: endpoint });
    return { ...result, stderr: current.join('') + result.stderr };
  } finally {
    current = null;
  }
}

launchServer().then((server) => {
  const endpoint = server.wsEndpoint();
  process.stdout.write(endpoint + '\n');
  let queue = Promise.resolve();
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    queue = queue.then(() => runJob(line, endpoint)).catch((err) => (
      { code: 1, stdout: '', stderr: `the job failed: ${err && err.stack || err}\n` }
    )).then((answer) => new Promise((resolve) => process.stdout.write(JSON.stringify(answer) + '\n', resolve)));
  });
  lines.on('close', () => queue.then(() => server.close()).then(() => process.exit(0)));
}, (err) => {
  process.stderr.write(`the browser failed to start: ${err && err.stack || err}\n`);
  process.exit(1);
});
