//! End-to-end tests live in `tests/`: they start the ingestor, the batcher and the notifier in-process, each on
//! `127.0.0.1:0`, against the real Redis and PostgreSQL, with a fresh database and key prefix per test.
