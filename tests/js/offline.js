#!/usr/bin/env node
// The client library in Chromium reacts to the browser going offline and online:
//
//   node tests/js/offline.js <page_url> <base_url>
//
// The page (see tests/test_sockjs_client_browser.py) loads the library; this connects through it,
// takes the browser offline (playwright's setOffline: navigator.onLine false, an 'offline' event),
// then online again, and prints one JSON line: the client's states in order, and how many times it
// tried to open a transport while offline. Exit status 0 when it ran, 1 when the browser failed.
'use strict';

const { launch, reportOnce, script } = require('./chromium.js');

async function main([pageUrl, baseUrl], env, io) {
  const browser = await launch(env);
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (err) => io.note(`page error: ${err.message}\n`));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.gateway, null, { timeout: 20000 });
    await page.evaluate(async (baseUrl) => {
      window.states = [];
      window.triedOffline = 0;
      // every transport the library opens goes through this: count those tried while offline
      function CountingSockJS(...args) {
        if (!navigator.onLine) window.triedOffline += 1;
        return new window.SockJS(...args);
      }
      window.client = window.gateway.connect(baseUrl, { SockJS: CountingSockJS, transports: ['websocket'],
        backoff: { base: 20, max: 50 } });
      window.client.on('state', ({ state }) => window.states.push(state));
      await window.client.ready();
    }, baseUrl);
    await context.setOffline(true);
    await page.waitForFunction(() => window.client.state === 'reconnecting', null, { timeout: 10000 });
    // offline for a while: with waits of at most 50 ms, a client that kept retrying would have opened again
    await page.waitForTimeout(500);
    const whileOffline = await page.evaluate(() => window.client.state);
    await context.setOffline(false);
    await page.waitForFunction(() => window.client.state === 'open', null, { timeout: 10000 });
    const reply = await page.evaluate(async () => (await window.client.api.getRoot()).status);
    const result = await page.evaluate(() => ({ states: window.states, triedOffline: window.triedOffline }));
    return { ok: true, ...result, whileOffline, reply };
  } finally {
    await browser.close();
  }
}

script(module, reportOnce(main));
