#!/usr/bin/env node
// A page on another origin calls the gateway's HTTP API with fetch() (CORS), in headless Chromium:
//
//   node tests/js/cors.js <page_url> <base_url> <username> <password>
//
// It logs in with POST /tokens and lists GET /emails, reading X-Total-Count, and prints one JSON line
// with what the page saw. Exit status 0 when the page ran, 1 when the browser or the calls failed.
'use strict';

const { launch, reportOnce, script } = require('./chromium.js');

async function main([pageUrl, baseUrl, username, password], env) {
  const browser = await launch(env);
  try {
    const page = await browser.newPage();
    await page.goto(pageUrl);
    return await page.evaluate(async ({ baseUrl, username, password }) => {
      const login = await fetch(`${baseUrl}/tokens`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }),
      });
      const token = (await login.json()).token.value;
      const emails = await fetch(`${baseUrl}/emails?limit=5`, { headers: { Authorization: `Bearer ${token}` } });
      const listed = await emails.json();
      let formRefused = null;
      try {  // a form post, which needs no preflight: refused (415), and unreadable here without CORS headers
        const form = await fetch(`${baseUrl}/accounts`, { method: 'POST', body: new URLSearchParams({ a: 'b' }) });
        formRefused = form.status;
      } catch (e) {
        formRefused = `blocked: ${e.message}`;
      }
      return { ok: true, origin: location.origin, login: login.status, emails: emails.status,
        total: emails.headers.get('X-Total-Count'), count: listed.emails.length, formRefused };
    }, { baseUrl, username, password });
  } finally {
    await browser.close();
  }
}

script(module, reportOnce(main));
