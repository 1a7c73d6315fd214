#!/usr/bin/env node
// One headless Chromium that several browser scripts use in turn, instead of each starting its own
// (a start and a stop cost about half a second each time):
//
//   node tests/js/chromium-server.js
//
// Prints the browser's endpoint as one line; the scripts connect to it when CHROMIUM_ENDPOINT names it
// (chromium.js), each page in a context of its own. Runs until its stdin closes, then closes the browser.
'use strict';

const { launchServer } = require('./chromium.js');

launchServer().then((server) => {
  process.stdout.write(server.wsEndpoint() + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => server.close().then(() => process.exit(0)));
}, (err) => {
  process.stderr.write(`the browser failed to start: ${err && err.stack || err}\n`);
  process.exit(1);
});
