//! `API_KEYS`, shared by the services that read or write content: parsing, checking, and finding the key a
//! request carries (`Authorization: Bearer <key>`, or the `access_token` query parameter for browsers'
//! EventSource and WebSocket, which cannot set headers).
//!
//! Keys are held in [`Secret`]s, whose `Debug` prints no key, and compared in constant time, so response
//! timing does not tell how much of a guess was right.

use std::{fmt, sync::Arc};

use subtle::ConstantTimeEq;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A key: printed as `Secret(<redacted>)` by `Debug`, never as its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key itself, for comparing; never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it can be sent in an `Authorization` header: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
    pub fn is_usable(&self) -> bool {
        let key = self.expose();
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `API_KEYS`: the keys that may write and read content. Empty means open.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(pub Vec<Secret>);

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys(<{} redacted>)", self.0.len())
    }
}

/// `API_KEYS`: comma-separated, blanks around keys and empty entries ignored. It never fails: clap would
/// print a refused value in its error, so keys are checked later ([`ReadKeys::new`], or the service's own
/// check), without echoing them.
pub fn parse_api_keys(value: &str) -> Result<ApiKeys, String> {
    Ok(ApiKeys(
        value
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(Secret::new)
            .collect(),
    ))
}

/// A single secret (`ADMIN_API_KEY`), trimmed; checked later (see [`parse_api_keys`] for why not here).
pub fn parse_secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value.trim()))
}

/// A key that cannot be used; names the variable and the key's position, never the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{variable}: key #{position} must be 1 to {MAX_KEY_LEN} visible ASCII characters (it is sent in an Authorization header)"
)]
pub struct BadKey {
    pub variable: &'static str,
    /// 1-based.
    pub position: usize,
}

/// Checks every key of `API_KEYS`.
pub fn check_api_keys(api_keys: &ApiKeys) -> Result<(), BadKey> {
    match api_keys.0.iter().position(|key| !key.is_usable()) {
        Some(index) => Err(BadKey {
            variable: "API_KEYS",
            position: index + 1,
        }),
        None => Ok(()),
    }
}

/// Who may read content: open without `API_KEYS`; with them, a request must carry one. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ReadKeys(Arc<[Secret]>);

impl ReadKeys {
    /// Checks every key.
    pub fn new(api_keys: &ApiKeys) -> Result<Self, BadKey> {
        check_api_keys(api_keys)?;
        Ok(Self(api_keys.0.clone().into()))
    }

    /// Whether reading needs a key.
    pub fn needed(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether a request with this `Authorization` header value and this query string may read. The header
    /// counts when present (a wrong bearer token is not saved by a right query parameter).
    pub fn allows(&self, authorization: Option<&[u8]>, query: Option<&str>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let from_query = access_token(query);
        let token = match authorization {
            Some(value) => bearer_token(value),
            None => from_query.as_deref().map(str::as_bytes),
        };
        token.is_some_and(|token| matches_any(token, &self.0))
    }

    /// [`ReadKeys::allows`] for a request's headers and URI: every service's check of a read.
    pub fn allows_request(&self, headers: &http::HeaderMap, uri: &http::Uri) -> bool {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        self.allows(authorization, uri.query())
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive, RFC 7235).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The query parameter a key may travel in.
#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// The `access_token` parameter of a query string, percent-decoded; `None` if absent or empty, and also if
/// repeated or the query cannot be decoded (which value would count is ambiguous).
pub fn access_token(query: Option<&str>) -> Option<String> {
    let query: TokenQuery = serde_urlencoded::from_str(query.unwrap_or("")).ok()?;
    query.access_token.filter(|token| !token.is_empty())
}

/// Whether `token` equals one of `keys`. Every key is compared, each in constant time, so the time taken
/// depends neither on which key matched nor on how much of a wrong token was right. (The lengths of the
/// keys may show; their contents do not.)
pub fn matches_any(token: &[u8], keys: &[Secret]) -> bool {
    keys.iter()
        .fold(subtle::Choice::from(0), |found, key| {
            found | key.expose().as_bytes().ct_eq(token)
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &str) -> ApiKeys {
        parse_api_keys(list).unwrap()
    }

    #[test]
    fn api_keys_split_on_commas_and_skip_blanks() {
        let parsed = keys(" a1 ,, b2,");
        let exposed: Vec<_> = parsed.0.iter().map(Secret::expose).collect();
        assert_eq!(exposed, ["a1", "b2"]);
        assert_eq!(keys("").0.len(), 0);
        assert_eq!(keys(" , ").0.len(), 0);
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let api_keys = keys("hunter2-write,other-key");
        let printed = format!("{api_keys:?} {:?}", ReadKeys::new(&api_keys).unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("ApiKeys(<2 redacted>)"), "{printed}");
    }

    #[test]
    fn unusable_keys_are_named_by_position_not_value() {
        let error = ReadKeys::new(&keys("good,bad key")).unwrap_err();
        assert_eq!(
            error,
            BadKey {
                variable: "API_KEYS",
                position: 2
            }
        );
        assert!(!error.to_string().contains("bad key"));
        let long = ApiKeys(vec![Secret::new("k".repeat(MAX_KEY_LEN + 1))]);
        assert!(ReadKeys::new(&long).is_err());
    }

    #[test]
    fn reads_take_a_listed_key_as_bearer_or_access_token() {
        let open = ReadKeys::new(&ApiKeys::default()).unwrap();
        assert!(!open.needed());
        assert!(open.allows(None, None));

        let guarded = ReadKeys::new(&keys("k1,k/2")).unwrap();
        assert!(guarded.needed());
        assert!(guarded.allows(Some(b"Bearer k1"), None));
        assert!(guarded.allows(Some(b"bearer  k/2 "), None));
        assert!(guarded.allows(None, Some("access_token=k1")));
        assert!(guarded.allows(None, Some("after=3&access_token=k%2F2&limit=5")));
        for bad in [
            "Bearer k3",
            "Bearer k",
            "Bearer ",
            "Basic k1",
            "k1",
            "Bearerk1",
        ] {
            assert!(!guarded.allows(Some(bad.as_bytes()), None), "{bad:?}");
        }
        for bad in [
            None,
            Some(""),
            Some("access_token="),
            Some("access_token=k3"),
            Some("access_token=k1&access_token=k1"),
            Some("token=k1"),
        ] {
            assert!(!guarded.allows(None, bad), "{bad:?}");
        }
        // A wrong bearer token is not saved by a right query parameter: the header counts when present.
        assert!(!guarded.allows(Some(b"Bearer k3"), Some("access_token=k1")));
    }
}
