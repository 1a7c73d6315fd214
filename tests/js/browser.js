#!/usr/bin/env node
// The gateway's /ws endpoint driven by the real sockjs-client in headless Chromium, on one
// forced transport, including those only a browser has (iframe-*, jsonp-polling).
//
//   node tests/js/browser.js <page_url> <base_url> <transport> <username>
//
// <page_url> is a page that loads sockjs-client (window.SockJS), the client library (window.gateway)
// and library-scenario.js (window.runLibraryScenario); tests/test_sockjs_client_browser.py serves one on another origin
// than the gateway's.  Prints what scenario.js prints: one JSON line per step, then the
// result line; exit status 0, 1 (the scenario failed) or 2 (usage).  Chromium is Debian's
// (CHROMIUM, default /usr/bin/chromium), or the one CHROMIUM_ENDPOINT names (chromium-server.js), driven by
// playwright-core, which downloads nothing.
// Bounded by SCENARIO_TIMEOUT_MS (default 20000); SCENARIO_SUBJECT (default "hi") is the subject
// of the email it sends.
'use strict';

const { launch, script } = require('./chromium.js');

const TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource', 'iframe-eventsource',
  'iframe-htmlfile', 'iframe-xhr-polling', 'jsonp-polling'];

async function scenario(env, io, { pageUrl, baseUrl, transport, username, timeoutMs, subject }) {
  const browser = await launch(env);
  let lines = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => io.note(`page error: ${err.message}\n`));
    page.on('console', (message) => io.note(`console.${message.type()}: ${message.text()}\n`));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.runLibraryScenario && window.gateway, null, { timeout: timeoutMs });
    const run = page.evaluate(({ baseUrl, transport, username, subject }) => {
      window.scenarioLines = [];
      const emit = (line) => window.scenarioLines.push(line);
      return window.runLibraryScenario({ gateway: window.gateway, SockJS: window.SockJS, baseUrl, transport, username,
        subject, emit })
        .then((result) => ({ result }), (err) => ({ error: { step: err.step, message: err.message } }));
    }, { baseUrl, transport, username, subject });
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ error: { step: 'timeout', message: `timed out after ${timeoutMs} ms` } }),
        timeoutMs);
    });
    const outcome = await Promise.race([run, timeout]);
    clearTimeout(timer);
    lines = await page.evaluate(() => window.scenarioLines);
    if (outcome.error && outcome.error.step === 'timeout' && lines.length) {
      outcome.error.step = `after ${lines[lines.length - 1].step}`;
    }
    return { lines, ...outcome };
  } finally {
    await browser.close();
  }
}

async function main([pageUrl, baseUrl, transport, username], env, io) {
  if (!pageUrl || !baseUrl || !TRANSPORTS.includes(transport) || !username) {
    io.note(`usage: node browser.js <page_url> <base_url> <${TRANSPORTS.join('|')}> <username>\n`);
    return 2;
  }
  const timeoutMs = Number(env.SCENARIO_TIMEOUT_MS || 20000);
  const subject = env.SCENARIO_SUBJECT || 'hi';
  const run = scenario(env, io, { pageUrl, baseUrl, transport, username, timeoutMs, subject });
  return run.then(({ lines, result, error }) => {
    lines.forEach(io.emit);
    if (result) {
      io.emit(result);
      return 0;
    }
    const message = `${transport}: step '${error.step}' failed: ${error.message}`;
    io.emit({ ok: false, transport, step: error.step, error: message });
    io.note(message + '\n');
    return 1;
  }, (err) => {
    const message = `${transport}: the browser failed: ${err && err.stack || err}`;
    io.emit({ ok: false, transport, step: 'browser', error: message });
    io.note(message + '\n');
    return 1;
  });
}

script(module, main);
