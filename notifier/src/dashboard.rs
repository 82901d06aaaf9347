//! The dashboard: the built files of `DASHBOARD_DIR` at `/` (a single-page app, so unknown paths get its
//! index.html), or, when it is not built, a small page that says how to build it and prints the live events.
//! Also `GET /config.json`, which tells the dashboard where the ingestor's API is.

use std::path::Path;

use axum::{
    Json, Router,
    extract::State,
    response::{Html, IntoResponse},
    routing::get,
};
use pipeline::api::ClientConfig;
use tower_http::services::{ServeDir, ServeFile};

use crate::{Config, state::AppState};

/// Body of `GET /config.json`.
pub(crate) fn client_config_of(config: &Config) -> ClientConfig {
    ClientConfig {
        ingestor_url: config.ingestor_url.clone(),
        batch_size: config.batch.batch_size as u64,
        batch_timeout_seconds: config.batch.batch_timeout.as_secs_f64(),
    }
}

async fn client_config(State(state): State<AppState>) -> Json<ClientConfig> {
    Json(ClientConfig::clone(&state.client_config))
}

/// Adds `/config.json` and the dashboard (the router's fallback) to `router`.
///
/// Whether the dashboard is built is checked once, here: build it, then restart the notifier.
pub(crate) fn serve(router: Router<AppState>, dir: &Path) -> Router<AppState> {
    let router = router.route("/config.json", get(client_config));
    let index = dir.join("index.html");
    if index.is_file() {
        router.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
    } else {
        tracing::warn!(dir = %dir.display(), "dashboard not built (no index.html); serving the fallback page at /");
        router.route("/", get(not_built))
    }
}

async fn not_built() -> impl IntoResponse {
    Html(NOT_BUILT_PAGE)
}

/// Shown at `/` when the dashboard is not built: how to build it, and the raw events so the pipeline can still be
/// watched.
const NOT_BUILT_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ingestion pipeline: dashboard not built</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; }
  pre { background: #f4f4f4; padding: .75rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
</style>
</head>
<body>
<h1>The dashboard is not built</h1>
<p>Build it with <code>dashboard/build.sh</code> (it writes <code>dashboard/dist</code>; the notifier serves
<code>DASHBOARD_DIR</code>), then restart the notifier.</p>
<p>Meanwhile, the live events of <code>/ws/stats</code>: <span id="status">connecting…</span></p>
<h2>Latest stats_update</h2>
<pre id="stats">(none yet)</pre>
<h2>batch_persisted events (newest first)</h2>
<pre id="events"></pre>
<script>
  const stats = document.getElementById("stats");
  const events = document.getElementById("events");
  const status = document.getElementById("status");
  const lines = [];
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/stats");
    ws.onopen = () => { status.textContent = "connected"; };
    ws.onmessage = (e) => {
      if (e.data.startsWith('{"type":"stats_update"')) { stats.textContent = e.data; return; }
      lines.unshift(e.data);
      if (lines.length > 100) lines.pop();
      events.textContent = lines.join("\n");
    };
    ws.onclose = () => { status.textContent = "disconnected, retrying in 1 s"; setTimeout(connect, 1000); };
  }
  connect();
</script>
</body>
</html>
"#;
