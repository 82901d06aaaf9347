//! [`redact`]: a connection string with its password hidden, fit for logs, error messages and `Debug`.
//!
//! `DATABASE_URL` comes in every form libpq accepts, and each can carry a password:
//! - URL userinfo: `postgres://app:s3cret@db/ingest` (also `redis://:s3cret@host`);
//! - URL query: `postgres://app@db/ingest?password=s3cret`;
//! - key-value: `host=db user=app password=s3cret` or `password = 'with spaces \' and quotes'`.
//!
//! Pure, so each form is unit-tested; when a string cannot be read with certainty, everything from the
//! password's key on is hidden rather than risk printing part of it.

/// What a hidden password reads as.
const HIDDEN: &str = "***";

/// `connection` with every password replaced by `***`; anything else is unchanged.
pub fn redact(connection: &str) -> String {
    match connection.find("://") {
        Some(scheme_end) => redact_url(connection, scheme_end + 3),
        None => redact_key_value(connection),
    }
}

/// A URL: the password of the userinfo, and every `password` query parameter.
fn redact_url(url: &str, authority_start: usize) -> String {
    // The query starts at the first `?` (a password in the userinfo must percent-encode `?`); the
    // userinfo ends at the last `@` before it, so a raw `/` or `@` in the password is still hidden.
    let query_start = url.find('?').unwrap_or(url.len());
    let head = &url[..query_start];
    let mut out = String::with_capacity(url.len());
    match head[authority_start..].rfind('@') {
        Some(at) => {
            let at = authority_start + at;
            let userinfo = &url[authority_start..at];
            out.push_str(&url[..authority_start]);
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&head[at..]);
        }
        None => out.push_str(head),
    }
    if query_start < url.len() {
        out.push('?');
        let query = &url[query_start + 1..];
        let (query, fragment) = match query.split_once('#') {
            Some((query, fragment)) => (query, Some(fragment)),
            None => (query, None),
        };
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if is_password_key(key) => format!("{key}={HIDDEN}"),
                _ => parameter.to_owned(),
            })
            .collect();
        out.push_str(&parameters.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

/// `password`, also percent-encoded or in another case (libpq is strict; hiding more costs nothing).
fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.to_ascii_lowercase().contains("%70assword")
}

/// libpq's key-value form: `key = value` pairs separated by whitespace, a value either single-quoted (with
/// `\'` and `\\` escapes) or running to the next unescaped whitespace.
fn redact_key_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            return out;
        }
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = &rest[key_end..];
        let Some(after_equals) = after_key.trim_start().strip_prefix('=') else {
            // Not `key = value`: the string is not what libpq reads. Hide all of it that might be a password.
            return hide_from_password(out, rest);
        };
        let value_start = after_equals.len() - after_equals.trim_start().len();
        let value = &after_equals[value_start..];
        let Some(value_len) = value_extent(value) else {
            return hide_from_password(out, rest);
        };
        // The key, `=` and the spaces around it.
        let separator_len = rest.len() - value.len();
        out.push_str(&rest[..separator_len]);
        if is_password_key(key) {
            out.push_str(HIDDEN);
        } else {
            out.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
}

/// The length of the value at the start of `value`: a quoted one through its closing quote, else up to
/// the next unescaped whitespace. `None` for a quote that is never closed.
fn value_extent(value: &str) -> Option<usize> {
    let mut chars = value.char_indices();
    if value.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' => return Some(i + 1),
                _ => {}
            }
        }
        return None;
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c.is_whitespace() => return Some(i),
            _ => {}
        }
    }
    Some(value.len())
}

/// `out` followed by `rest`, hidden from its first mention of a password on (all of it when unsure).
fn hide_from_password(mut out: String, rest: &str) -> String {
    match rest.to_ascii_lowercase().find("password") {
        Some(at) => {
            out.push_str(&rest[..at]);
            out.push_str("password=");
            out.push_str(HIDDEN);
        }
        None => out.push_str(rest),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_the_password_of_its_userinfo() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/ingest"),
            "postgres://app:***@db:5432/ingest"
        );
        assert_eq!(
            redact("postgresql://app:p@ss/w:rd@db/ingest?sslmode=disable"),
            "postgresql://app:***@db/ingest?sslmode=disable"
        );
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
    }

    #[test]
    fn a_url_loses_every_password_query_parameter() {
        assert_eq!(
            redact("postgres://app@db/ingest?password=s3cret"),
            "postgres://app@db/ingest?password=***"
        );
        assert_eq!(
            redact("postgres://db/ingest?user=app&password=s3cr@t&sslmode=disable"),
            "postgres://db/ingest?user=app&password=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgres://a:one@db/x?PASSWORD=two#frag"),
            "postgres://a:***@db/x?PASSWORD=***#frag"
        );
        assert_eq!(
            redact("postgres:///ingest?host=/run/pg&%70assword=s3cret"),
            "postgres:///ingest?host=/run/pg&%70assword=***"
        );
    }

    #[test]
    fn key_value_strings_lose_the_password_value_in_every_quoting() {
        assert_eq!(
            redact("host=db user=app password=s3cret dbname=ingest"),
            "host=db user=app password=*** dbname=ingest"
        );
        assert_eq!(
            redact("password = 's3 cr\\'et' host=db"),
            "password = *** host=db"
        );
        assert_eq!(redact("host=db password=s3c\\ ret"), "host=db password=***");
        assert_eq!(redact("host=db\tpassword=''"), "host=db\tpassword=***");
    }

    #[test]
    fn malformed_key_value_strings_hide_everything_from_the_password_on() {
        assert_eq!(
            redact("host=db password='never closed s3cret"),
            "host=db password=***"
        );
        assert_eq!(
            redact("host=db garbage password s3cret"),
            "host=db garbage password=***"
        );
    }

    #[test]
    fn strings_without_a_password_are_unchanged() {
        for text in [
            "postgres://app@db/ingest",
            "redis://127.0.0.1:6379",
            "host=db user=app dbname='my db'",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
