//! The service's configuration: one documented tree, loaded once from the
//! environment (or flags), validated at startup. Secrets (database and Redis
//! URLs, which may carry passwords) are `secrecy::SecretString`s, redacted in
//! `Debug`; read them with `ExposeSecret::expose_secret` only to connect.

use clap::Args;
use secrecy::SecretString;
use std::net::SocketAddr;

/// Clap's parser for secret values (`SecretString` has no `FromStr`).
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
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

/// Every setting of `licensed`.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Postgres URL of the event log.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        value_parser = secret
    )]
    pub database_url: SecretString,
    /// Postgres schema holding the log's tables (default: the connection's search_path).
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Most Postgres connections of this process.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Redis URL of the read model.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = secret
    )]
    pub redis_url: SecretString,
    /// Key prefix of the Redis read model.
    #[arg(long, env = "REDIS_PREFIX", default_value = "ll:")]
    pub redis_prefix: String,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream stream the events are published on.
    #[arg(long, env = "NATS_STREAM", default_value = "LICENSE_EVENTS")]
    pub nats_stream: String,
    /// Subject prefix: events go to `<prefix>.<tenant>.<license>.<Type>`.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "license.events")]
    pub nats_subject_prefix: String,
    /// Address the HTTP API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
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
    #[arg(long, env = "SIGNING_KEY_PATH", default_value = ".dev/signing-key.pem")]
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
        default_value = "https://license-ledger.local"
    )]
    pub token_issuer: String,
    /// Requests per minute per user (with a burst of the same size / 10, at least 10).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_per_minute: u32,
    /// How long acquire waits for the signer before answering 202.
    #[arg(long, env = "ACQUIRE_TOKEN_WAIT_MS", default_value_t = 3000)]
    pub acquire_token_wait_ms: u64,
    /// How often the signer checkpoints the log (signs its running hash), seconds.
    #[arg(long, env = "CHECKPOINT_INTERVAL_SECS", default_value_t = 60)]
    pub checkpoint_interval_secs: u64,
    /// How often the reaper looks for sessions past their deadline.
    #[arg(long, env = "REAPER_INTERVAL_MS", default_value_t = 1000)]
    pub reaper_interval_ms: u64,
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
}
