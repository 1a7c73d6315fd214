// Debian's Chromium, driven by playwright-core (which downloads nothing), as every browser script here uses it.
'use strict';

const { chromium } = require('playwright-core');

// Headless as root on a machine without network: no sandbox, and nothing that phones home.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function options(env) {
  return { executablePath: env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true };
}

/** Chromium (CHROMIUM, default /usr/bin/chromium), headless: a browser of its own, or, when
 * CHROMIUM_ENDPOINT names one that chromium-server.js runs, a connection to that browser (each page
 * then in a context of its own; closing the connection closes them). */
function launch(env = process.env) {
  const endpoint = env.CHROMIUM_ENDPOINT;
  return endpoint ? chromium.connect(endpoint) : chromium.launch(options(env));
}

/** A browser server for launch() to connect to (see chromium-server.js). */
function launchServer() {
  return chromium.launchServer(options(process.env));
}

/**
 * A browser script: `main(args, env, io)` writes its JSON lines with io.emit(value) and its notes with
 * io.note(text), and resolves with its exit status.  Exported as `run(args, env)`, which resolves with
 * {code, stdout, stderr} (chromium-server.js runs scripts so, in its own process); run with `args`
 * from the command line when `mod` is the script node was started with.
 */
function script(mod, main) {
  async function run(args, env) {
    const stdout = [];
    const stderr = [];
    const io = { emit: (line) => stdout.push(JSON.stringify(line) + '\n'), note: (text) => stderr.push(text) };
    let code;
    try {
      code = await main(args, env, io);
    } catch (err) {
      stderr.push(`${err && err.stack || err}\n`);
      code = 1;
    }
    return { code, stdout: stdout.join(''), stderr: stderr.join('') };
  }
  mod.exports = { run };
  if (require.main === mod) {
    run(process.argv.slice(2), process.env).then(({ code, stdout, stderr }) => {
      process.stderr.write(stderr);
      process.stdout.write(stdout, () => process.exit(code));
    });
  }
}

/** A script's main for script() that reports what `main(args, env, io)` resolves with as one JSON line
 * (status 0); on failure {ok: false, error} (status 1). */
function reportOnce(main) {
  return (args, env, io) => main(args, env, io).then((result) => {
    io.emit(result);
    return 0;
  }, (err) => {
    io.emit({ ok: false, error: String(err && err.stack || err) });
    return 1;
  });
}

module.exports = { launch, launchServer, reportOnce, script };
