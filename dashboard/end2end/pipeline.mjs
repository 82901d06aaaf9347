// Starts the real pipeline for the browser tests: a fresh PostgreSQL database, a unique Redis key prefix,
// free loopback ports, and the ingestor, batcher and notifier binaries (built beforehand by run.sh).
// Everything it starts it stops, and the database is dropped, in `stop()`.

import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TARGET_DIR = process.env.CARGO_TARGET_DIR || join(ROOT, "target");
const BIN_DIR = join(TARGET_DIR, process.env.E2E_PROFILE || "debug");
const ADMIN_DATABASE_URL =
  process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.TEST_REDIS_URL || process.env.REDIS_URL || "redis://127.0.0.1:6379";

/** Longest wait for a service to answer /health after it was started. */
const START_TIMEOUT_MS = 30_000;
/** Longest wait for a service to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** A TCP port that was free on 127.0.0.1 a moment ago. */
function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** Runs SQL on the admin database with psql (bounded by a timeout). */
function psql(sql) {
  execFileSync("psql", [ADMIN_DATABASE_URL, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], {
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 30_000,
  });
}

/** The database URL of `name` on the admin URL's server. */
function databaseUrl(name) {
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Polls `url` until it answers 200 or `timeoutMs` passes. */
async function waitHealthy(url, timeoutMs, isAlive) {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`${url}: the process exited`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error.message;
    }
    await sleep(100);
  }
  throw new Error(`${url} not healthy within ${timeoutMs} ms (${last})`);
}

/** One service process, restartable. */
class Service {
  constructor(name, env, healthUrl, logDir) {
    this.name = name;
    this.env = env;
    this.healthUrl = healthUrl;
    this.logPath = join(logDir, `${name}.log`);
    this.child = null;
  }

  async start() {
    const binary = join(BIN_DIR, this.name);
    if (!existsSync(binary)) throw new Error(`${binary} is missing: build it first (run.sh does)`);
    const log = openSync(this.logPath, "a");
    this.child = spawn(binary, [], { env: this.env, stdio: ["ignore", log, log] });
    this.exited = new Promise((done) => this.child.once("exit", (code, signal) => done({ code, signal })));
    const child = this.child;
    await waitHealthy(this.healthUrl, START_TIMEOUT_MS, () => child.exitCode === null && child.signalCode === null);
  }

  /** SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_MS. Resolves with how it exited. */
  async stop() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return null;
    this.child.kill("SIGTERM");
    const timeout = sleep(STOP_TIMEOUT_MS).then(() => "timeout");
    let result = await Promise.race([this.exited, timeout]);
    if (result === "timeout") {
      this.child.kill("SIGKILL");
      result = await this.exited;
    }
    return result;
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }
}

/** The whole pipeline on free ports, with its own database and key prefix. */
export class Pipeline {
  static async start({ batchSize = 50, batchTimeout = "0.5" } = {}) {
    const id = randomBytes(6).toString("hex");
    const pipeline = new Pipeline();
    pipeline.database = `e2e_${id}`;
    pipeline.prefix = `e2e-${id}`;
    // DELETE /reset is refused unless the ingestor has an admin key.
    pipeline.adminKey = `admin-${randomBytes(12).toString("hex")}`;
    pipeline.logDir = mkdtempSync(join(tmpdir(), "dashboard-e2e-"));
    const [ingestorPort, batcherPort, notifierPort] = [await freePort(), await freePort(), await freePort()];
    pipeline.ingestorUrl = `http://127.0.0.1:${ingestorPort}`;
    pipeline.notifierUrl = `http://127.0.0.1:${notifierPort}`;

    psql(`CREATE DATABASE "${pipeline.database}"`);
    pipeline.created = true;

    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_LOG: process.env.RUST_LOG || "info",
      REDIS_URL,
      DATABASE_URL: databaseUrl(pipeline.database),
      REDIS_KEY_PREFIX: pipeline.prefix,
      BATCH_SIZE: String(batchSize),
      BATCH_TIMEOUT: String(batchTimeout),
      INGESTOR_ADDR: `127.0.0.1:${ingestorPort}`,
      BATCHER_ADDR: `127.0.0.1:${batcherPort}`,
      NOTIFIER_ADDR: `127.0.0.1:${notifierPort}`,
      BATCHER_ID: `e2e-${id}`,
      INGESTOR_URL: pipeline.ingestorUrl,
      CORS_ORIGINS: pipeline.notifierUrl,
      ADMIN_API_KEY: pipeline.adminKey,
      DASHBOARD_DIR: join(ROOT, "dashboard", "dist"),
    };
    pipeline.services = {
      ingestor: new Service("ingestor", env, `${pipeline.ingestorUrl}/health`, pipeline.logDir),
      batcher: new Service("batcher", env, `http://127.0.0.1:${batcherPort}/health`, pipeline.logDir),
      notifier: new Service("notifier", env, `${pipeline.notifierUrl}/health`, pipeline.logDir),
    };
    try {
      for (const service of Object.values(pipeline.services)) await service.start();
    } catch (error) {
      error.message += `\n${pipeline.logs()}`;
      await pipeline.stop();
      throw error;
    }
    return pipeline;
  }

  /** The services' logs, for a failure message. */
  logs() {
    return Object.values(this.services || {})
      .map((service) => `--- ${service.name} (${service.logPath})\n${service.log().slice(-4_000)}`)
      .join("\n");
  }

  async stop() {
    for (const service of Object.values(this.services || {})) await service.stop();
    if (this.created) {
      try {
        psql(`DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
      } catch (error) {
        console.error(`could not drop ${this.database}: ${error.message}`);
      }
      this.created = false;
    }
    deleteRedisKeys(this.prefix);
  }
}

/** Deletes the test's Redis keys (they all carry the `{prefix}` hash tag), when redis-cli is installed. */
function deleteRedisKeys(prefix) {
  if (!prefix) return;
  try {
    const url = new URL(REDIS_URL);
    const args = ["-h", url.hostname || "127.0.0.1", "-p", url.port || "6379"];
    const keys = execFileSync("redis-cli", [...args, "--scan", "--pattern", `{${prefix}}:*`], {
      encoding: "utf8",
      timeout: 10_000,
    })
      .split("\n")
      .filter(Boolean);
    if (keys.length > 0) execFileSync("redis-cli", [...args, "DEL", ...keys], { timeout: 10_000, stdio: "ignore" });
  } catch {
    // redis-cli missing: the keys are namespaced by a unique prefix and harmless.
  }
}
