//! The service's configuration: one documented tree, loaded once from the
//! environment (or flags), validated at startup. Secrets (database and Redis
//! URLs, which may carry passwords) are redacted in `Debug`.

use clap::Args;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Clap's parser for secret values.
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// The defaults, shared by the command line and [`Config::default`].
pub mod defaults {
    /// `DATABASE_URL`.
    pub const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
    /// `DB_MAX_CONNECTIONS`.
    pub const DB_MAX_CONNECTIONS: u32 = 16;
    /// `REDIS_URL`.
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
    /// `REDIS_PREFIX`.
    pub const REDIS_PREFIX: &str = "ll:";
    /// `NATS_URL`.
    pub const NATS_URL: &str = "nats://127.0.0.1:4222";
    /// `NATS_STREAM`.
    pub const NATS_STREAM: &str = "LICENSE_EVENTS";
    /// `NATS_SUBJECT_PREFIX`.
    pub const NATS_SUBJECT_PREFIX: &str = "license.events";
    /// `LISTEN_ADDR`.
    pub const LISTEN_ADDR: &str = "0.0.0.0:8080";
    /// `METRICS_ADDR`.
    pub const METRICS_ADDR: &str = "0.0.0.0:9090";
    /// `SIGNING_KEY_PATH`.
    pub const SIGNING_KEY_PATH: &str = ".dev/signing-key.pem";
    /// `TOKEN_ISSUER`.
    pub const TOKEN_ISSUER: &str = "https://license-ledger.local";
    /// `RATE_LIMIT_PER_MINUTE`.
    pub const RATE_LIMIT_PER_MINUTE: u32 = 600;
    /// `ACQUIRE_TOKEN_WAIT_MS`.
    pub const ACQUIRE_TOKEN_WAIT_MS: u64 = 3000;
    /// `CHECKPOINT_INTERVAL_SECS`.
    pub const CHECKPOINT_INTERVAL_SECS: u64 = 60;
    /// `REAPER_INTERVAL_MS`.
    pub const REAPER_INTERVAL_MS: u64 = 1000;
    /// `KEYSET_REFRESH_SECS`.
    pub const KEYSET_REFRESH_SECS: u64 = 60;
}

/// Which backend signs license tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SignerBackendKind {
    /// A PEM RSA key on disk (development and tests; generated when missing).
    Local,
    /// Google Cloud KMS (production).
    Kms,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Every setting of `licensed`. From the environment (or flags) in `main`;
/// tests build it as a value: `Config { database_url: .., ..Config::default() }`.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Postgres URL of the event log.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = defaults::DATABASE_URL,
        value_parser = secret
    )]
    pub database_url: SecretString,
    /// Postgres schema holding the log's tables (default: the connection's search_path).
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Most Postgres connections of this process.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = defaults::DB_MAX_CONNECTIONS)]
    pub db_max_connections: u32,
    /// Redis URL of the read model.
    #[arg(long, env = "REDIS_URL", default_value = defaults::REDIS_URL, value_parser = secret)]
    pub redis_url: SecretString,
    /// Key prefix of the Redis read model.
    #[arg(long, env = "REDIS_PREFIX", default_value = defaults::REDIS_PREFIX)]
    pub redis_prefix: String,
    /// PEM CA bundle that signs the Redis server's certificate (`rediss://`;
    /// default: the system's roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// NATS server URL (`tls://` requires TLS).
    #[arg(long, env = "NATS_URL", default_value = defaults::NATS_URL)]
    pub nats_url: String,
    /// PEM CA bundle that signs the NATS server's certificate (turns TLS on).
    #[arg(long, env = "NATS_CA_FILE")]
    pub nats_ca_file: Option<PathBuf>,
    /// PEM client certificate for NATS (with `NATS_CLIENT_KEY`).
    #[arg(long, env = "NATS_CLIENT_CERT")]
    pub nats_client_cert: Option<PathBuf>,
    /// PEM private key of `NATS_CLIENT_CERT`.
    #[arg(long, env = "NATS_CLIENT_KEY")]
    pub nats_client_key: Option<PathBuf>,
    /// NATS user of this component (with `NATS_PASSWORD`; see deploy/nats/permissions.conf).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// Password of `NATS_USER`.
    #[arg(long, env = "NATS_PASSWORD", value_parser = secret)]
    pub nats_password: Option<SecretString>,
    /// JetStream stream the events are published on.
    #[arg(long, env = "NATS_STREAM", default_value = defaults::NATS_STREAM)]
    pub nats_stream: String,
    /// Subject prefix: events go to `<prefix>.<tenant>.<license>.<Type>`.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = defaults::NATS_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,
    /// Address the HTTP API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = defaults::LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// Address `/metrics` is served on (not the API's: the ingress never routes it).
    #[arg(long, env = "METRICS_ADDR", default_value = defaults::METRICS_ADDR)]
    pub metrics_addr: SocketAddr,
    /// JWKS URL of the identity provider that issues user tokens.
    #[arg(long, env = "AUTH_JWKS_URL", default_value = "")]
    pub auth_jwks_url: String,
    /// Expected `iss` of user tokens.
    #[arg(long, env = "AUTH_ISSUER", default_value = "")]
    pub auth_issuer: String,
    /// Expected `aud` of user tokens.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "")]
    pub auth_audience: String,
    /// Comma-separated origins allowed by CORS (empty: no cross-origin access).
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        default_value = "",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Token signing backend.
    #[arg(long, env = "SIGNER_BACKEND", value_enum, default_value_t = SignerBackendKind::Local)]
    pub signer_backend: SignerBackendKind,
    /// PEM key of the local signer (generated when missing).
    #[arg(long, env = "SIGNING_KEY_PATH", default_value = defaults::SIGNING_KEY_PATH)]
    pub signing_key_path: String,
    /// KMS key version that signs (`projects/../cryptoKeyVersions/N`).
    #[arg(long, env = "KMS_KEY_VERSION")]
    pub kms_key_version: Option<String>,
    /// KMS key whose enabled versions are published in the JWKS.
    #[arg(long, env = "KMS_KEY_NAME")]
    pub kms_key_name: Option<String>,
    /// KMS endpoint override (tests use a local stand-in).
    #[arg(long, env = "KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// `iss` of minted license tokens.
    #[arg(
        long,
        env = "TOKEN_ISSUER",
        default_value = defaults::TOKEN_ISSUER
    )]
    pub token_issuer: String,
    /// Requests per minute per user (with a burst of the same size / 10, at least 10).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = defaults::RATE_LIMIT_PER_MINUTE)]
    pub rate_limit_per_minute: u32,
    /// Client address of unauthenticated requests for the per-address rate
    /// limit: 0, the TCP peer; N, the N-th entry from the right of
    /// X-Forwarded-For (2 behind a Google Cloud external Application Load Balancer).
    #[arg(long, env = "TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: usize,
    /// How long acquire waits for the signer before answering 202.
    #[arg(long, env = "ACQUIRE_TOKEN_WAIT_MS", default_value_t = defaults::ACQUIRE_TOKEN_WAIT_MS)]
    pub acquire_token_wait_ms: u64,
    /// How often the signer checkpoints the log (signs its running hash), seconds.
    #[arg(long, env = "CHECKPOINT_INTERVAL_SECS", default_value_t = defaults::CHECKPOINT_INTERVAL_SECS)]
    pub checkpoint_interval_secs: u64,
    /// Directory the signer also writes each signed checkpoint to, outside
    /// the database (production: a retention-locked bucket mounted there).
    #[arg(long, env = "CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// How often the reaper looks for sessions past their deadline.
    #[arg(long, env = "REAPER_INTERVAL_MS", default_value_t = defaults::REAPER_INTERVAL_MS)]
    pub reaper_interval_ms: u64,
    /// How often the signing key set (KMS key versions) is re-read, seconds:
    /// a new version reaches the JWKS, a disabled one leaves it, within this.
    #[arg(long, env = "KEYSET_REFRESH_SECS", default_value_t = defaults::KEYSET_REFRESH_SECS)]
    pub keyset_refresh_secs: u64,
}

impl Default for Config {
    /// The documented defaults (the same as the command line's), no environment.
    fn default() -> Self {
        Self {
            database_url: defaults::DATABASE_URL.into(),
            database_schema: None,
            db_max_connections: defaults::DB_MAX_CONNECTIONS,
            redis_url: defaults::REDIS_URL.into(),
            redis_prefix: defaults::REDIS_PREFIX.into(),
            redis_ca_file: None,
            nats_url: defaults::NATS_URL.into(),
            nats_ca_file: None,
            nats_client_cert: None,
            nats_client_key: None,
            nats_user: None,
            nats_password: None,
            nats_stream: defaults::NATS_STREAM.into(),
            nats_subject_prefix: defaults::NATS_SUBJECT_PREFIX.into(),
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            auth_jwks_url: String::new(),
            auth_issuer: String::new(),
            auth_audience: String::new(),
            allowed_origins: Vec::new(),
            log_format: LogFormat::Text,
            signer_backend: SignerBackendKind::Local,
            signing_key_path: defaults::SIGNING_KEY_PATH.into(),
            kms_key_version: None,
            kms_key_name: None,
            kms_endpoint: None,
            token_issuer: defaults::TOKEN_ISSUER.into(),
            rate_limit_per_minute: defaults::RATE_LIMIT_PER_MINUTE,
            trusted_proxy_hops: 0,
            acquire_token_wait_ms: defaults::ACQUIRE_TOKEN_WAIT_MS,
            checkpoint_interval_secs: defaults::CHECKPOINT_INTERVAL_SECS,
            checkpoint_dir: None,
            reaper_interval_ms: defaults::REAPER_INTERVAL_MS,
            keyset_refresh_secs: defaults::KEYSET_REFRESH_SECS,
        }
    }
}

impl Config {
    /// Checks what clap cannot, naming the variable at fault.
    pub fn validate(&self, needs_auth: bool) -> Result<(), String> {
        if needs_auth {
            for (name, value) in [
                ("AUTH_JWKS_URL", &self.auth_jwks_url),
                ("AUTH_ISSUER", &self.auth_issuer),
                ("AUTH_AUDIENCE", &self.auth_audience),
            ] {
                if value.trim().is_empty() {
                    return Err(format!("{name} must be set (or run `licensed all --dev`)"));
                }
            }
        }
        if self.signer_backend == SignerBackendKind::Kms && self.kms_key_version.is_none() {
            return Err("KMS_KEY_VERSION must be set when SIGNER_BACKEND=kms".into());
        }
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !token_ok(&self.nats_subject_prefix)
            || self.nats_subject_prefix.starts_with('.')
            || self.nats_subject_prefix.ends_with('.')
        {
            return Err("NATS_SUBJECT_PREFIX must be dot-separated tokens of [A-Za-z0-9_-]".into());
        }
        if !self
            .nats_stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            || self.nats_stream.is_empty()
        {
            return Err("NATS_STREAM must be [A-Za-z0-9_-]+".into());
        }
        if let Some(schema) = &self.database_schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err("DATABASE_SCHEMA must be [A-Za-z0-9_]+".into());
            }
        }
        if self.nats_client_cert.is_some() != self.nats_client_key.is_some() {
            return Err("NATS_CLIENT_CERT and NATS_CLIENT_KEY go together".into());
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            return Err("NATS_USER and NATS_PASSWORD go together".into());
        }
        if self.db_max_connections == 0 || self.rate_limit_per_minute == 0 {
            return Err("DB_MAX_CONNECTIONS and RATE_LIMIT_PER_MINUTE must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn secrets_are_redacted_and_validation_names_the_variable() {
        use clap::Parser;
        let cli = Cli::parse_from(["x", "--database-url", "postgres://u:hunter2@h/db"]);
        assert!(!format!("{:?}", cli.config).contains("hunter2"));
        let err = cli.config.validate(true).unwrap_err();
        assert!(err.contains("AUTH_JWKS_URL"), "{err}");
        let mut bad = cli.config.clone();
        bad.nats_subject_prefix = "a..b>".into();
        assert!(bad
            .validate(false)
            .unwrap_err()
            .contains("NATS_SUBJECT_PREFIX"));
    }

    #[test]
    fn the_typed_default_is_the_documented_default() {
        let config = Config::default();
        assert_eq!(config.listen_addr.to_string(), defaults::LISTEN_ADDR);
        assert_eq!(config.metrics_addr.to_string(), defaults::METRICS_ADDR);
        assert!(!format!("{config:?}").contains("postgres://"));
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&config.database_url),
            defaults::DATABASE_URL
        );
        assert!(config.validate(false).is_ok());
    }
}
