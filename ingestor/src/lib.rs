//! HTTP front door: validates messages and pushes them onto the Redis pending list.
