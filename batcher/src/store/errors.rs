//! What PostgreSQL's errors mean for a batch: some row is refused (*data*), or try again (*transient*).

use std::time::Duration;

/// `unique_violation`: a direct COPY met a row that is already there.
pub(super) const UNIQUE_VIOLATION: &str = "23505";

/// What PostgreSQL's error means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Some row's values are refused (classes 22 data exception, 23 integrity violation, 54 program limit):
    /// isolate and dead-letter the rows, commit the rest.
    Data,
    /// Anything else (connection lost or refused, class 08, 57P01–57P03 shutdown, 53 resources, 57014
    /// statement timeout, 40 serialization, …): retry the whole batch; never drop it.
    Transient,
}

/// Classifies a SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> ErrorKind {
    match code.get(..2) {
        Some("22" | "23" | "54") => ErrorKind::Data,
        _ => ErrorKind::Transient,
    }
}

pub(super) fn is_data_error(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| classify_sqlstate(code.code()) == ErrorKind::Data)
}

/// PostgreSQL's refusal of one row, for `dead_letters.error`.
pub(super) fn refusal_text(error: &tokio_postgres::Error) -> String {
    let text = match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!(
                "PostgreSQL refused the row: {} ({detail}) [SQLSTATE {}]",
                db.message(),
                db.code().code()
            ),
            None => format!(
                "PostgreSQL refused the row: {} [SQLSTATE {}]",
                db.message(),
                db.code().code()
            ),
        },
        None => format!("PostgreSQL refused the row: {error}"),
    };
    crate::row::error_text(&text)
}

impl StoreError {
    /// Whether a smaller batch could succeed where this one failed: the statement was cancelled (57014,
    /// e.g. a `statement_timeout` shorter than one COPY of the batch), memory ran out (53200), or a try hung
    /// past its timeout. Not a connection that is lost or refused: halving would not help there.
    pub fn size_may_be_the_cause(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::OffsetGap => false,
            Self::Postgres(error) | Self::Unattributable(error) => error
                .code()
                .is_some_and(|code| matches!(code.code(), "57014" | "53200")),
        }
    }
}

/// A failure that leaves the batch uncommitted (or its commit unknown): retry on a new connection.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error("PostgreSQL refused the batch, but no single row: {0}")]
    Unattributable(tokio_postgres::Error),
    /// The staged insert skipped a row it had numbered (see `sql::INSERT_MESSAGES`); a retry numbers again.
    #[error("a row was skipped after it was given a channel offset; retrying the batch")]
    OffsetGap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_exceptions_and_integrity_violations_are_data_errors() {
        for code in [
            "22001", "22008", "22P02", "22021", "23514", "23502", "23505", "54000",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorKind::Data, "{code}");
        }
    }

    #[test]
    fn connection_shutdown_resource_and_timeout_errors_are_transient() {
        for code in [
            "08000", "08006", "08001", "57P01", "57P02", "57P03", "53100", "53300", "57014",
            "40001", "40P01", "42P01", "XX000", "",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorKind::Transient, "{code}");
        }
    }
}
