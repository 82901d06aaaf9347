//! A WebSocket kept open (`/ws/stats`, `/ws/channels`): on close, error or silence it reconnects with capped
//! exponential backoff ([`crate::model::backoff`]) and tells the page what is happening.

use std::{
    cell::{Cell, RefCell},
    rc::{Rc, Weak},
    time::Duration,
};

use leptos::prelude::{set_interval, set_timeout};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use web_sys::{MessageEvent, WebSocket};

use super::clock::{now_ms, random};
use crate::model::backoff;

/// How often the silence is checked.
const WATCHDOG_PERIOD: Duration = Duration::from_secs(1);

/// What the socket reports to the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    /// A connection attempt started.
    Connecting,
    /// The handshake finished; `reconnected` when an earlier connection had been open.
    Open { reconnected: bool },
    /// A text frame.
    Text(String),
    /// The connection is gone; attempt `attempt` starts in `retry_in`.
    Lost { attempt: u32, retry_in: Duration },
}

type Handler = Closure<dyn FnMut(JsValue)>;

/// The open WebSocket and the closures it calls (dropping them while it could still call them would trap).
struct Live {
    ws: WebSocket,
    _handlers: [Handler; 3],
}

struct Socket {
    /// Asked at each attempt, so a changed API key is used by the next connection.
    url: Box<dyn Fn() -> String>,
    /// This long without a frame (or without the handshake finishing) means the connection is dead even if
    /// the browser has not noticed (a half-open TCP connection); `None` for a socket that may stay quiet.
    silence_ms: Option<f64>,
    on_event: Box<dyn Fn(SocketEvent)>,
    /// Failed attempts since the last frame received.
    attempt: Cell<u32>,
    /// Bumped whenever a connection is given up, so its late events are ignored.
    generation: Cell<u64>,
    live: RefCell<Option<Live>>,
    /// When a retry is scheduled, the watchdog has nothing to watch.
    waiting: Cell<bool>,
    last_heard_ms: Cell<f64>,
    ever_opened: Cell<bool>,
}

/// A started socket, to send on.
#[derive(Clone)]
pub struct SocketHandle(Weak<Socket>);

impl SocketHandle {
    /// Sends a text frame if a connection is open; `false` if not (the next `Open` is the time to resend).
    pub fn send(&self, text: &str) -> bool {
        let Some(socket) = self.0.upgrade() else {
            return false;
        };
        let live = socket.live.borrow();
        live.as_ref().is_some_and(|live| {
            live.ws.ready_state() == WebSocket::OPEN && live.ws.send_with_str(text).is_ok()
        })
    }
}

/// Connects to `url()` and keeps reconnecting for the life of the page, calling `on_event` for everything.
/// `silence`: see [`Socket::silence_ms`].
pub fn start(
    url: impl Fn() -> String + 'static,
    silence: Option<Duration>,
    on_event: impl Fn(SocketEvent) + 'static,
) -> SocketHandle {
    let socket = Rc::new(Socket {
        url: Box::new(url),
        silence_ms: silence.map(|s| s.as_secs_f64() * 1_000.0),
        on_event: Box::new(on_event),
        attempt: Cell::new(0),
        generation: Cell::new(0),
        live: RefCell::new(None),
        waiting: Cell::new(false),
        last_heard_ms: Cell::new(now_ms()),
        ever_opened: Cell::new(false),
    });
    connect(&socket);
    let handle = SocketHandle(Rc::downgrade(&socket));
    // The watchdog owns the socket: it lives as long as the page.
    set_interval(
        move || {
            let silent = |limit| now_ms() - socket.last_heard_ms.get() > limit;
            if !socket.waiting.get() && socket.silence_ms.is_some_and(silent) {
                lost(&socket);
            }
        },
        WATCHDOG_PERIOD,
    );
    handle
}

fn connect(socket: &Rc<Socket>) {
    detach(socket);
    socket.waiting.set(false);
    socket.last_heard_ms.set(now_ms());
    let generation = socket.generation.get();
    (socket.on_event)(SocketEvent::Connecting);
    let Ok(ws) = WebSocket::new(&(socket.url)()) else {
        lost(socket);
        return;
    };
    let weak = Rc::downgrade(socket);
    let on_open = handler(&weak, generation, |socket, _| {
        socket.last_heard_ms.set(now_ms());
        let reconnected = socket.ever_opened.replace(true);
        (socket.on_event)(SocketEvent::Open { reconnected });
    });
    let on_message = handler(&weak, generation, |socket, event| {
        socket.last_heard_ms.set(now_ms());
        // Only a frame proves the server works: until then, failed attempts keep counting up.
        socket.attempt.set(0);
        if let Some(text) = event
            .dyn_into::<MessageEvent>()
            .ok()
            .and_then(|m| m.data().as_string())
        {
            (socket.on_event)(SocketEvent::Text(text));
        }
    });
    // An error is always followed by a close, so only the close reconnects.
    let on_close = handler(&weak, generation, |socket, _| lost(socket));
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    *socket.live.borrow_mut() = Some(Live {
        ws,
        _handlers: [on_open, on_message, on_close],
    });
}

/// A handler that forwards events of connection `generation` only.
fn handler(weak: &Weak<Socket>, generation: u64, on: fn(&Rc<Socket>, JsValue)) -> Handler {
    let weak = weak.clone();
    Closure::new(move |event: JsValue| {
        if let Some(socket) = weak.upgrade()
            && socket.generation.get() == generation
        {
            on(&socket, event);
        }
    })
}

/// Gives up the current connection and schedules the next attempt.
///
/// May run inside one of the connection's own handlers, so the connection is only detached (its closures
/// dropped) by the next `connect`.
fn lost(socket: &Rc<Socket>) {
    socket.generation.set(socket.generation.get() + 1);
    socket.waiting.set(true);
    if let Some(live) = socket.live.borrow().as_ref() {
        let _ = live.ws.close();
    }
    let attempt = socket.attempt.get();
    socket.attempt.set(attempt.saturating_add(1));
    let retry_in = backoff::delay(attempt, random());
    (socket.on_event)(SocketEvent::Lost {
        attempt: attempt + 1,
        retry_in,
    });
    let weak = Rc::downgrade(socket);
    set_timeout(
        move || {
            if let Some(socket) = weak.upgrade() {
                connect(&socket);
            }
        },
        retry_in,
    );
}

/// Unhooks and closes the previous connection, if any.
fn detach(socket: &Socket) {
    if let Some(live) = socket.live.borrow_mut().take() {
        live.ws.set_onopen(None);
        live.ws.set_onmessage(None);
        live.ws.set_onclose(None);
        let _ = live.ws.close();
    }
}
