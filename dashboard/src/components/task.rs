//! Running a form's request: one at a time, `busy` while it runs, its error (or none) shown after.

use std::future::Future;

use leptos::{prelude::*, task::spawn_local};

use crate::model::errors::FormError;

/// A form's request state.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    pub busy: RwSignal<bool>,
    pub error: RwSignal<Option<FormError>>,
}

impl Task {
    pub fn new() -> Self {
        Self {
            busy: RwSignal::new(false),
            error: RwSignal::new(None),
        }
    }

    /// Runs `request` unless one is still running (a double click sends nothing twice).
    pub fn run(self, request: impl Future<Output = Result<(), FormError>> + 'static) {
        if self.busy.get_untracked() {
            return;
        }
        self.busy.set(true);
        spawn_local(async move {
            self.error.set(request.await.err());
            self.busy.set(false);
        });
    }
}
