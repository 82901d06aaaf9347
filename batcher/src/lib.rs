//! Moves messages from Redis in batches and persists them to PostgreSQL with binary COPY.
