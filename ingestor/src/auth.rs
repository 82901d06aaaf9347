//! Access control: `API_KEYS` guard the write endpoints and the reading of content (`GET /messages`, channel
//! history), `ADMIN_API_KEY` guards `DELETE /reset`.
//!
//! Keys travel as `Authorization: Bearer <key>` (reads also take `?access_token=<key>`, for browsers'
//! EventSource and WebSocket, which cannot set headers) and are compared in constant time, so response timing does
//! not tell how much of a guess was right. They are held in [`Secret`]s, whose `Debug` prints no key: the
//! configuration can be logged, and no log line can carry a key.
//!
//! Handlers ask for access with an extractor placed before the body ([`WriteAccess`], [`ReadAccess`],
//! [`AdminAccess`]), so an unauthorised request is refused before its body is read. The extractors take the
//! [`Access`] from any state that holds one (`AsRef<Access>`), so this module needs nothing from `state`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};
pub use pipeline::access::{ApiKeys, BadKey, MAX_KEY_LEN, Secret, parse_api_keys, parse_secret};
use pipeline::access::{ReadKeys, bearer_token, matches_any};

use crate::error::ApiError;

/// Who may do what; built once from the configuration. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Access {
    writers: Arc<[Secret]>,
    /// The same keys, for reading.
    readers: ReadKeys,
    admin: Option<Secret>,
}

impl Access {
    /// Checks every key; an empty `ADMIN_API_KEY` counts as unset.
    pub fn new(api_keys: &ApiKeys, admin: Option<&Secret>) -> Result<Self, BadKey> {
        let readers = ReadKeys::new(api_keys)?;
        let admin = admin.filter(|key| !key.expose().is_empty());
        if let Some(key) = admin
            && !key.is_usable()
        {
            return Err(BadKey {
                variable: "ADMIN_API_KEY",
                position: 1,
            });
        }
        Ok(Self {
            writers: api_keys.0.clone().into(),
            readers,
            admin: admin.cloned(),
        })
    }

    /// Whether the write endpoints demand a key.
    pub fn writes_need_key(&self) -> bool {
        !self.writers.is_empty()
    }

    /// Whether `DELETE /reset` is enabled.
    pub fn reset_enabled(&self) -> bool {
        self.admin.is_some()
    }

    /// Writes are open without `API_KEYS`; with them, the bearer token must be one of them.
    pub fn check_write(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.writers.is_empty() {
            return Ok(());
        }
        match bearer(headers) {
            Some(token) if matches_any(token, &self.writers) => Ok(()),
            _ => Err(ApiError::Unauthorized {
                needs: "one of the ingestor's API_KEYS",
            }),
        }
    }

    /// Reading content (`GET /messages`, `GET /channels/{channel_id}/messages`) is open without `API_KEYS`; with them, the
    /// request must carry one of them, as a bearer token or (for browsers' EventSource and WebSocket, which
    /// cannot set headers) as the `access_token` query parameter.
    pub fn check_read(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        if self.readers.allows_request(headers, uri) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized {
                needs: "one of the ingestor's API_KEYS (bearer token or `access_token` query parameter)",
            })
        }
    }

    /// Reset is refused (403) without `ADMIN_API_KEY`; with it, the bearer token must be that key.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(admin) = &self.admin else {
            return Err(ApiError::ResetDisabled);
        };
        match bearer(headers) {
            Some(token) if matches_any(token, std::slice::from_ref(admin)) => Ok(()),
            _ => Err(ApiError::Unauthorized {
                needs: "the ingestor's ADMIN_API_KEY",
            }),
        }
    }
}

/// The bearer token of the request's `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    bearer_token(headers.get(header::AUTHORIZATION)?.as_bytes())
}

/// Extractor: the request may use the write endpoints (`POST /messages`, `/messages/batch`, `/simulate`).
#[derive(Debug, Clone, Copy)]
pub struct WriteAccess;

impl<S: AsRef<Access> + Sync> FromRequestParts<S> for WriteAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        state.as_ref().check_write(&parts.headers).map(|()| Self)
    }
}

/// Extractor: the request may read messages' content (see [`Access::check_read`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadAccess;

impl<S: AsRef<Access> + Sync> FromRequestParts<S> for ReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        state
            .as_ref()
            .check_read(&parts.headers, &parts.uri)
            .map(|()| Self)
    }
}

/// Extractor: the request may use `DELETE /reset`.
#[derive(Debug, Clone, Copy)]
pub struct AdminAccess;

impl<S: AsRef<Access> + Sync> FromRequestParts<S> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        state.as_ref().check_admin(&parts.headers).map(|()| Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys(list: &str) -> ApiKeys {
        parse_api_keys(list).unwrap()
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn code(result: Result<(), ApiError>) -> &'static str {
        result.map_or_else(|error| error.code(), |()| "ok")
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let api_keys = keys("hunter2-write,other-key");
        let admin = Secret::new("hunter2-admin");
        let printed = format!(
            "{api_keys:?} {admin:?} {:?}",
            Access::new(&api_keys, Some(&admin)).unwrap()
        );
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("ApiKeys(<2 redacted>)"), "{printed}");
    }

    #[test]
    fn api_keys_are_checked_as_read_keys_and_an_unusable_admin_key_is_named() {
        // How API_KEYS are checked and named (by position, never by value) is tested in pipeline::access.
        let api_keys = keys("good,bad key");
        assert_eq!(
            Access::new(&api_keys, None).unwrap_err(),
            ReadKeys::new(&api_keys).unwrap_err()
        );
        let long = Secret::new("k".repeat(MAX_KEY_LEN + 1));
        let error = Access::new(&ApiKeys::default(), Some(&long)).unwrap_err();
        assert_eq!(error.variable, "ADMIN_API_KEY");
        let empty = Secret::new("");
        assert!(
            !Access::new(&ApiKeys::default(), Some(&empty))
                .unwrap()
                .reset_enabled()
        );
    }

    #[test]
    fn writes_are_open_without_keys_and_guarded_with_them() {
        let open = Access::new(&ApiKeys::default(), None).unwrap();
        assert_eq!(code(open.check_write(&HeaderMap::new())), "ok");

        let guarded = Access::new(&keys("k1,k2"), None).unwrap();
        assert_eq!(code(guarded.check_write(&with_auth("Bearer k2"))), "ok");
        assert_eq!(code(guarded.check_write(&with_auth("bearer  k1 "))), "ok");
        for bad in [
            "Bearer k3",
            "Bearer k",
            "Bearer k1x",
            "Bearer ",
            "Basic k1",
            "k1",
            "Bearerk1",
        ] {
            assert_eq!(
                code(guarded.check_write(&with_auth(bad))),
                "unauthorized",
                "{bad:?}"
            );
        }
        assert_eq!(code(guarded.check_write(&HeaderMap::new())), "unauthorized");
    }

    #[test]
    fn reads_take_a_listed_key_as_bearer_or_access_token() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let open = Access::new(&ApiKeys::default(), None).unwrap();
        assert_eq!(code(open.check_read(&HeaderMap::new(), &uri("/x"))), "ok");

        let guarded = Access::new(&keys("k1,k/2"), None).unwrap();
        let none = HeaderMap::new();
        assert_eq!(
            code(guarded.check_read(&with_auth("Bearer k1"), &uri("/x"))),
            "ok"
        );
        assert_eq!(
            code(guarded.check_read(&none, &uri("/x?access_token=k1"))),
            "ok"
        );
        assert_eq!(
            code(guarded.check_read(&none, &uri("/x?after=3&access_token=k%2F2&limit=5"))),
            "ok"
        );
        for bad in [
            "/x",
            "/x?",
            "/x?access_token=",
            "/x?access_token=k3",
            "/x?access_token=k1&access_token=k1",
            "/x?token=k1",
        ] {
            assert_eq!(
                code(guarded.check_read(&none, &uri(bad))),
                "unauthorized",
                "{bad:?}"
            );
        }
        // A wrong bearer token is not saved by a right query parameter: the header counts when present.
        assert_eq!(
            code(guarded.check_read(&with_auth("Bearer k3"), &uri("/x?access_token=k1"))),
            "unauthorized"
        );
    }

    #[test]
    fn reset_is_forbidden_without_an_admin_key_and_needs_exactly_it() {
        let disabled = Access::new(&keys("k1"), None).unwrap();
        assert_eq!(
            code(disabled.check_admin(&with_auth("Bearer k1"))),
            "forbidden"
        );

        let admin = Secret::new("root-key");
        let enabled = Access::new(&keys("k1"), Some(&admin)).unwrap();
        assert_eq!(
            code(enabled.check_admin(&with_auth("Bearer root-key"))),
            "ok"
        );
        assert_eq!(
            code(enabled.check_admin(&with_auth("Bearer k1"))),
            "unauthorized"
        );
        assert_eq!(code(enabled.check_admin(&HeaderMap::new())), "unauthorized");
    }
}
