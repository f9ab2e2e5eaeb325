// The browsers of the end-to-end test with a real Janus: drives Debian's Chromium (through
// playwright-core, with fake camera and microphone) through Janus's stock demo pages, and records
// what each page's own PeerConnections say they sent and received (getStats()).
//
//   node janus.mjs < scenario.json > result.json
//
// The scenario (stdin): {"pages": [{"name", "url", "kind": "echotest" | "videoroom",
// "display"?}], "seconds": how long the calls last, "chromium"?: path}. Every page is opened at
// once, in one browser with one context per page (its own fake devices); an EchoTest page is
// started, a VideoRoom page is started and joins with its display name (the pages of one room
// then see each other). The calls last `seconds` from the moment every page's PeerConnections
// are up; then every page is stopped at once with its own Stop button (janus.destroy()).
//
// The result (stdout): {"pages": [{"name", "up": ms, "stopped": ms, "samples": [{"t": ms,
// "sent": {"audio": bytes, "video": bytes}, "received": {"audio": bytes, "video": bytes}}]}]}:
// every half second from the page's start to its stop, the bytes on the wire so far (payload and RTP headers: what an SFU counts)
// over the page's PeerConnections: the EchoTest's one, the VideoRoom publisher's for `sent`, and
// its subscribers' for `received`. Times are Unix milliseconds.
//
// Run by crates/telemetry-server/tests/it/janus_e2e.rs; set up by tools/setup-browser.sh. Exits
// non-zero with a message naming the page and what failed.

import { chromium } from 'playwright-core';

const started = Date.now();
const log = (message) => console.error(`janus.mjs [${((Date.now() - started) / 1000).toFixed(1)} s] ${message}`);

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

const scenario = await readStdin();
const seconds = scenario.seconds ?? 30;

const browser = await chromium.launch({
  executablePath: scenario.chromium ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    '--autoplay-policy=no-user-gesture-required'],
});

/** The page's PeerConnections, by role: what it publishes with and what it receives on. */
const PEER_CONNECTIONS = `(() => {
  const pc = (handle) => handle && handle.webrtcStuff && handle.webrtcStuff.pc;
  if (typeof echotest !== 'undefined' && echotest) {
    return { sending: [pc(echotest)], receiving: [pc(echotest)] };
  }
  const subscribers = (typeof feeds !== 'undefined' ? feeds : []).filter(Boolean).map(pc);
  return { sending: [pc(typeof sfutest !== 'undefined' ? sfutest : null)], receiving: subscribers };
})()`;

/** Bytes on the wire so far, by direction and kind, from the page's own getStats(). */
const BYTES = `(async () => {
  const { sending, receiving } = ${PEER_CONNECTIONS};
  const total = { audio: 0, video: 0 };
  const sum = async (pcs, type) => {
    const out = { audio: 0, video: 0 };
    let up = 0;
    for (const pc of pcs) {
      if (!pc) continue;
      if (pc.connectionState === 'connected' || pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') up += 1;
      const report = await pc.getStats();
      report.forEach((stat) => {
        if (stat.type !== type || !(stat.kind in out)) return;
        const bytes = type === 'outbound-rtp'
          ? (stat.bytesSent ?? 0) + (stat.headerBytesSent ?? 0)
          : (stat.bytesReceived ?? 0) + (stat.headerBytesReceived ?? 0);
        out[stat.kind] += bytes;
      });
    }
    return { out, up, count: pcs.filter(Boolean).length };
  };
  const sent = await sum(sending, 'outbound-rtp');
  const received = await sum(receiving, 'inbound-rtp');
  return { t: Date.now(), sent: sent.out, received: received.out,
    upSending: sent.up, upReceiving: received.up, receivers: received.count };
})()`;

async function open(spec) {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  const console_ = [];
  page.on('console', (message) => console_.push(message.text()));
  page.on('pageerror', (error) => console_.push(`pageerror: ${error.message}`));
  page.on('dialog', (dialog) => dialog.dismiss().catch(() => {}));
  await page.goto(spec.url, { waitUntil: 'load' });
  await page.waitForFunction(() => typeof Janus !== 'undefined' && document.querySelector('#start'));
  // Janus.init() binds the button once it is done.
  await page.waitForTimeout(500);
  await page.click('#start');
  if (spec.kind === 'videoroom') {
    await page.waitForSelector('#username:not([disabled])', { state: 'visible', timeout: 20000 });
    await page.fill('#username', spec.display);
    await page.click('#register');
  }
  return { spec, context, page, console: console_, samples: [], up: null, stopped: null };
}

function fail(run, message) {
  const lines = run.console.slice(-30).join('\n  ');
  throw new Error(`${run.spec.name}: ${message}\n  last console lines:\n  ${lines}`);
}

let runs;
try {
  runs = await Promise.all(scenario.pages.map(open));
  log(`opened ${runs.length} pages`);
  // Every page is sampled every half second from now until it stops, so that its counters are
  // known over the whole time Janus reports them.
  const sampleAll = async () => {
    const samples = await Promise.all(runs.map((run) => run.page.evaluate(BYTES)));
    runs.forEach((run, index) => run.samples.push(samples[index]));
  };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sampleAll();
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();
  // Up: the page sends on a connected PeerConnection and, for a VideoRoom page, receives the
  // other participants on theirs.
  const others = (run) => run.spec.kind === 'videoroom'
    ? scenario.pages.filter((spec) => spec.kind === 'videoroom' && spec.room === run.spec.room).length - 1
    : 1;
  const deadline = Date.now() + 45000;
  for (const run of runs) {
    for (;;) {
      const sample = run.samples.at(-1);
      if (sample && sample.upSending >= 1 && sample.upReceiving >= others(run)) {
        run.up = sample.t;
        break;
      }
      if (Date.now() > deadline) {
        sampling = false;
        fail(run, `PeerConnections not up after 45 s: ${JSON.stringify(sample)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  log(`every page is up; the calls last ${seconds} s`);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  sampling = false;
  await sampler;
  // The last samples of every page first: once one participant stops, the others stop receiving.
  await sampleAll();
  const stopped = Date.now();
  await Promise.all(runs.map((run) => {
    run.stopped = stopped;
    return run.page.click('#start');
  }));
  // Janus's event handler reports the hang-ups; give the pages a moment to send their requests.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  log('every page stopped');
} catch (error) {
  console.error(`janus.mjs: ${error.stack ?? error}`);
  await browser.close().catch(() => {});
  process.exit(1);
}

const result = {
  pages: runs.map((run) => ({
    name: run.spec.name,
    up: run.up,
    stopped: run.stopped,
    samples: run.samples.map(({ t, sent, received }) => ({ t, sent, received })),
  })),
};
process.stdout.write(JSON.stringify(result));
await browser.close();
