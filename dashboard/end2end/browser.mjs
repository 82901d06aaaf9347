// Headless Chromium through playwright-core, as every browser test opens it.

import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// playwright-core adds --headless and a fresh temporary profile (--user-data-dir) itself.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** Default bound of every wait on a page. */
export const WAIT_MS = 20_000;

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/**
 * A wide page of the dashboard at `url`, and the list its uncaught exceptions are collected in (a panic of the
 * wasm module shows up there).
 */
export async function openDashboard(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
  return { page, errors };
}
