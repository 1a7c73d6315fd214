// Debian's Chromium, driven by playwright-core (which downloads nothing), as every browser script here uses it.
'use strict';

const { chromium } = require('playwright-core');

// Headless as root on a machine without network: no sandbox, and nothing that phones home.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const OPTIONS = { executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true };

/** Chromium (CHROMIUM, default /usr/bin/chromium), headless: a browser of its own, or, when
 * CHROMIUM_ENDPOINT names one that chromium-server.js runs, a connection to that browser (each page
 * then in a context of its own; closing the connection closes them). */
function launch() {
  const endpoint = process.env.CHROMIUM_ENDPOINT;
  return endpoint ? chromium.connect(endpoint) : chromium.launch(OPTIONS);
}

/** A browser server for launch() to connect to (see chromium-server.js). */
function launchServer() {
  return chromium.launchServer(OPTIONS);
}

/** Print what `run` resolves with as one JSON line and exit 0; on failure {ok: false, error} and exit 1. */
function reportOnce(run) {
  run.then((result) => {
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
  }, (err) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.stack || err) }) + '\n',
      () => process.exit(1));
  });
}

module.exports = { launch, launchServer, reportOnce };
