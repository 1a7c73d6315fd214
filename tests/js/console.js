#!/usr/bin/env node
// The console (/console) and the API reference (/docs) in headless Chromium, as a person uses them:
//
//   node tests/js/console.js <base_url> <smtp_port> <screenshot_dir> <operation_count>
//
// One JSON line per step on stdout. When it prints {"step": "restart"} it waits for a line on stdin
// (the test restarts the gateway, mails alice, and writes "restarted <subject>"), then checks the
// console shows that mail. Exit status 0 when every step passed, 1 otherwise.
'use strict';

const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');
const { launch } = require('./chromium.js');

const [baseUrl, smtpPort, shots, operationCount] = process.argv.slice(2);
const PASSWORD = 'correct horse battery';
const TIMEOUT = 15000;
const stdin = readline.createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function smtpSend(port, to, subject) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    const steps = ['EHLO console.test', 'MAIL FROM:<sender@example.org>', `RCPT TO:<${to}>`, 'DATA',
      `From: sender@example.org\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\nhello\r\n.`, 'QUIT'];
    let buffer = '';
    let step = -1;
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('data', (data) => {
      buffer += data;
      const got = buffer.split('\r\n');
      buffer = got.pop();
      for (const line of got) {
        if (line[3] === '-') continue;
        if (Number(line.slice(0, 3)) >= 400) { socket.destroy(); reject(new Error(line)); return; }
        step += 1;
        if (step < steps.length) socket.write(`${steps[step]}\r\n`); else { socket.end(); resolve(); }
      }
    });
  });
}

async function register(page, username) {
  await page.goto(`${baseUrl}/console`);
  await page.waitForFunction(() => document.getElementById('state').textContent === 'open', null, { timeout: TIMEOUT });
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.click('#register');
  await page.waitForSelector('#app:not([hidden])', { timeout: TIMEOUT });
}

async function shows(page, subject) {
  await page.waitForFunction((s) => [...document.querySelectorAll('#emails .subject')].some((e) => e.textContent === s),
    subject, { timeout: TIMEOUT });
}

async function main() {
  const browser = await launch();
  try {
    const alice = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    const bob = await (await browser.newContext()).newPage();
    const problems = [];
    alice.on('pageerror', (e) => problems.push(e.message));
    // while the gateway is down for its restart, the browser logs the refused reconnects: expected
    let restarting = false;
    alice.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (restarting && /net::ERR_CONNECTION_REFUSED/.test(m.text())) return;
      problems.push(m.text());
    });

    await register(alice, 'alice');
    emit({ step: 'logged in', transport: await alice.textContent('#transport') });

    await smtpSend(smtpPort, 'alice@localhost', 'Hello over SMTP');
    await shows(alice, 'Hello over SMTP'); // pushed: no reload
    emit({ step: 'smtp mail shown' });

    await register(bob, 'bob');
    await alice.fill('#to', 'bob@localhost');
    await alice.fill('#subject', 'From Alice');
    await alice.fill('#text', 'hi bob');
    await alice.click('#compose button[type=submit]');
    await shows(bob, 'From Alice');
    emit({ step: 'sent to another account' });

    await alice.selectOption('#try-method', 'GET');
    await alice.fill('#try-path', '/emails?label=inbox');
    await alice.click('#try button[type=submit]');
    await alice.waitForFunction(() => document.getElementById('try-status').textContent === '200', null,
      { timeout: TIMEOUT });
    const tried = JSON.parse(await alice.textContent('#try-response'));
    emit({ step: 'tried a call', emails: tried.emails.length });
    const logged = await alice.$$eval('#event-log li', (items) => items.map((i) => i.textContent));
    emit({ step: 'event log', entries: logged.length, first: logged[logged.length - 1] });
    await alice.screenshot({ path: path.join(shots, 'console.png'), fullPage: true });

    await alice.selectOption('#transport-choice', 'xhr-streaming'); // sockjs-client from --ws-sockjs-url
    await alice.waitForFunction(() => document.getElementById('transport').textContent === 'over xhr-streaming',
      null, { timeout: TIMEOUT });
    await smtpSend(smtpPort, 'alice@localhost', 'Over xhr-streaming');
    await shows(alice, 'Over xhr-streaming');
    emit({ step: 'switched transport', transport: await alice.textContent('#transport') });

    restarting = true;
    emit({ step: 'restart' });
    const answer = (await lines.next()).value || '';
    const subject = answer.replace(/^restarted /, '');
    await alice.waitForFunction(() => document.getElementById('state').textContent === 'open', null,
      { timeout: TIMEOUT });
    await shows(alice, subject);
    restarting = false;
    emit({ step: 'resumed after restart', subject });

    const docs = await alice.context().newPage();
    await docs.goto(`${baseUrl}/docs`);
    await docs.waitForSelector('body[data-ready=true]', { timeout: TIMEOUT });
    const operations = await docs.$$eval('.operation', (items) => items.length);
    await docs.click('#getRoot button[type=submit]');
    await docs.waitForSelector('#getRoot .result .status', { timeout: TIMEOUT });
    const status = await docs.textContent('#getRoot .result .status');
    await docs.screenshot({ path: path.join(shots, 'docs.png') });
    emit({ step: 'docs', operations, expected: Number(operationCount), status });
    if (problems.length) throw new Error(`page errors: ${problems.join(' | ')}`);
    return { ok: true };
  } finally {
    await browser.close();
    stdin.close();
  }
}

main().then((result) => {
  emit(result);
  process.stdout.write('', () => process.exit(0));
}, (err) => {
  emit({ ok: false, error: String(err && err.stack || err) });
  process.stdout.write('', () => process.exit(1));
});
