//! The run's own PostgreSQL database (`bench_<random>`, dropped at the end) and where the servers are.

use anyhow::{Context, bail};
use pipeline::schema::with_database;
use uuid::Uuid;

/// The TCP host of a PostgreSQL URL must be loopback (a Unix socket is local too).
pub fn check_postgres_is_local(url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("not a PostgreSQL URL: {}", pipeline::schema::redact(url)))?;
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(name) = host
            && !is_loopback(name)
        {
            bail!("PostgreSQL host {name} is not loopback: the benchmark only loads this machine");
        }
    }
    Ok(())
}

/// Host and port of a Redis URL, which must be loopback.
pub fn redis_host_port(url: &str) -> anyhow::Result<(String, u16)> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .with_context(|| format!("not a Redis URL: {url}"))?;
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) if is_loopback(host) => Ok((host.clone(), *port)),
        other => bail!(
            "Redis at {other:?} is not a loopback TCP address: the benchmark only loads this machine"
        ),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A database created for this run.
#[derive(Debug)]
pub struct BenchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDatabase {
    /// Creates `bench_<random>` on the server of `any_url`, through its `postgres` database.
    pub async fn create(any_url: &str) -> anyhow::Result<Self> {
        check_postgres_is_local(any_url)?;
        let admin_url = with_database(any_url, "postgres");
        let name = format!("bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let admin = pipeline::schema::connect(&admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("Failed to create database {name}"))?;
        let url = with_database(any_url, &name);
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// Drops it, disconnecting whoever is still connected.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let admin = pipeline::schema::connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("Failed to drop database {}", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert!(check_postgres_is_local("postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(check_postgres_is_local("postgres://postgres@localhost/x").is_ok());
        assert!(check_postgres_is_local("postgres://postgres@10.0.0.5/x").is_err());
        assert_eq!(
            redis_host_port("redis://127.0.0.1:6390").unwrap(),
            ("127.0.0.1".to_owned(), 6390)
        );
        assert!(redis_host_port("redis://example.com:6379").is_err());
    }
}
