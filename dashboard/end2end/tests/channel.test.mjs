// The channel view in headless Chromium against the real pipeline (its own, BATCH_SIZE 10, BATCH_TIMEOUT
// 0.2 s): a channel's messages in offset order, older pages, and a notifier restart while messages keep coming
// that leaves exactly offsets 1..=N on the page, without a duplicate or a hole.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, openDashboard, WAIT_MS } from "../browser.mjs";
import { Pipeline } from "../pipeline.mjs";

/** The channel watched across a notifier restart, and the one whose history is paged. */
const LIVE_CHANNEL = 7;
const PAGED_CHANNEL = 8;
/** The view's page of history (`ChannelFeed::PAGE`). */
const PAGE = 100;

let pipeline;
let browser;
let page;
let pageErrors;
/** What the page sent on /ws/channels, parsed, in order (taken and emptied by `sentFrames()`). */
let sent = [];

before(
  async () => {
    pipeline = await Pipeline.start({ batchSize: 10, batchTimeout: "0.2" });
    browser = await launchBrowser();
    ({ page, errors: pageErrors } = await openDashboard(browser, `${pipeline.notifierUrl}/`));
    page.on("websocket", (socket) => {
      if (new URL(socket.url()).pathname === "/ws/channels") {
        socket.on("framesent", (frame) => sent.push(JSON.parse(frame.payload)));
      }
    });
  },
  { timeout: 120_000 },
);

after(async () => {
  await browser?.close();
  await pipeline?.stop();
});

/** `[from, …, to]`. */
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** `POST /messages` for m<from> … m<to>, one after the other, so their queue order is their number. */
async function send(channel, from, to) {
  for (const n of range(from, to)) {
    const response = await fetch(`${pipeline.ingestorUrl}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: 1, channel_id: channel, content: `m${n}` }),
      signal: AbortSignal.timeout(5_000),
    });
    if (response.status !== 201) assert.fail(`HTTP ${response.status}: ${await response.text()}`);
  }
}

/** `POST /messages/batch` of m<from> … m<to>, in that order. */
async function sendBatch(channel, from, to) {
  const body = range(from, to).map((n) => ({ user_id: 1, channel_id: channel, content: `m${n}` }));
  const response = await fetch(`${pipeline.ingestorUrl}/messages/batch`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (response.status !== 201) assert.fail(`HTTP ${response.status}: ${await response.text()}`);
}

/** Polls the ingestor's history until the channel's newest offset is `head` (bounded in time). */
async function waitForHead(channel, head, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let newest = 0;
  while (Date.now() < deadline) {
    const url = `${pipeline.ingestorUrl}/channels/${channel}/messages?before=9223372036854775807&limit=1`;
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    const [last] = response.ok ? await response.json() : [];
    newest = last?.offset ?? 0;
    if (newest === head) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`channel ${channel}: head ${newest}, not ${head}, after ${timeoutMs} ms`);
}

/** Offsets and contents of the rows shown, top to bottom. */
async function shown() {
  return page.$$eval('[data-testid="channel-feed"] li[data-offset]', (rows) =>
    rows.map((row) => [Number(row.dataset.offset), row.querySelector(".channel-content").textContent]),
  );
}

/** Waits until the view's last offset is `offset` and it shows `rows` rows. */
async function waitForView(offset, rows, timeout = WAIT_MS) {
  await page.waitForFunction(
    ([offset, rows]) => {
      const state = document.querySelector('[data-testid="channel-state"]');
      const count = document.querySelectorAll('[data-testid="channel-feed"] li[data-offset]').length;
      return state && Number(state.dataset.lastOffset) === offset && count === rows;
    },
    [offset, rows],
    { timeout },
  );
}

function channelState(state) {
  return page.locator(`[data-testid="channel-state"][data-state="${state}"]`);
}

async function watch(channel) {
  await page.getByTestId("channel-id").fill(String(channel));
  await page.getByTestId("channel-open").click();
}

function sentFrames() {
  const frames = sent;
  sent = [];
  return frames;
}

/** Rows m<from> … m<to> at offsets from … to. */
const rows = (from, to) => range(from, to).map((n) => [n, `m${n}`]);

test("a channel id the ingestor refuses gets its error under the field", async () => {
  await watch(0);
  const error = page.locator('.channel-picker .field-error[data-field="channel_id"]');
  await error.waitFor();
  assert.match(await error.textContent(), /channel_id/);
  assert.equal(await page.getByTestId("channel-feed").count(), 0);
});

test("a channel's messages arrive in offset order, and a notifier restart leaves exactly 1..=N", async () => {
  // History first: the view opens on what the channel already has.
  await send(LIVE_CHANNEL, 1, 5);
  await waitForHead(LIVE_CHANNEL, 5);
  await watch(LIVE_CHANNEL);
  await waitForView(5, 5);
  await channelState("connected").waitFor();
  await page.locator('.channel-picker .field-error').waitFor({ state: "detached" });
  assert.deepEqual(await shown(), rows(1, 5));

  // Then live.
  await send(LIVE_CHANNEL, 6, 15);
  await waitForView(15, 15);
  assert.deepEqual(await shown(), rows(1, 15));

  // The notifier goes away: messages sent meanwhile are persisted, and the view cannot see them ...
  await pipeline.services.notifier.stop();
  await channelState("reconnecting").waitFor({ timeout: 10_000 });
  await send(LIVE_CHANNEL, 16, 25);
  await waitForHead(LIVE_CHANNEL, 25);
  assert.deepEqual(await shown(), rows(1, 15));

  // ... it comes back while more are being sent; the view resubscribes after offset 15.
  const sending = send(LIVE_CHANNEL, 26, 40);
  await pipeline.services.notifier.start();
  await sending;
  await channelState("connected").waitFor({ timeout: 30_000 });
  await waitForView(40, 40, 30_000);
  assert.deepEqual(await shown(), rows(1, 40), "exactly offsets 1..=40, in order, no duplicate");
  // One subscription per connection, each resuming after the last offset shown; no hole needed another.
  assert.deepEqual(sentFrames(), [
    { type: "subscribe", channel_id: LIVE_CHANNEL, after: 5 },
    { type: "subscribe", channel_id: LIVE_CHANNEL, after: 15 },
  ]);
  assert.deepEqual(pageErrors, []);
});

test("older messages load a page at a time, without holes, and live ones keep arriving", async () => {
  await sendBatch(PAGED_CHANNEL, 1, 250);
  await waitForHead(PAGED_CHANNEL, 250);
  // Switching channels: the view starts over on the newest page of the new one.
  await watch(PAGED_CHANNEL);
  await waitForView(250, PAGE);
  assert.deepEqual(await shown(), rows(151, 250));
  assert.deepEqual(sentFrames(), [
    { type: "unsubscribe", channel_id: LIVE_CHANNEL },
    { type: "subscribe", channel_id: PAGED_CHANNEL, after: 250 },
  ]);

  const older = page.getByTestId("channel-load-older");
  await older.click();
  await waitForView(250, 2 * PAGE);
  assert.deepEqual(await shown(), rows(51, 250));
  // Scrolling back to the top asks for the page before, as the button does.
  await page.getByTestId("channel-feed").evaluate((list) => {
    list.scrollTop = 100;
    list.scrollTop = 0;
  });
  await waitForView(250, 250);
  assert.deepEqual(await shown(), rows(1, 250));
  // Offset 1 is shown: nothing is older.
  await older.waitFor({ state: "detached" });

  await send(PAGED_CHANNEL, 251, 255);
  await waitForView(255, 255);
  assert.deepEqual(await shown(), rows(1, 255));
  assert.deepEqual(pageErrors, []);
});
