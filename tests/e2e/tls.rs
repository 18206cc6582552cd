//! Production-shaped connections: the test starts its own Postgres, Redis
//! and NATS on free ports, each serving a certificate of a CA it generated
//! (rcgen), and runs every component in its own `App`, as the deployment
//! does:
//!
//! * Postgres with `sslmode=verify-full` and the CA file; the server accepts
//!   TLS connections only; the service logs in as a role that is only a
//!   `ledger_writer` (the migrations ran as a superuser);
//! * Redis over `rediss://` with `REDIS_CA_FILE`;
//! * NATS over TLS with `NATS_CA_FILE`, a client certificate, and one user
//!   per component with the permissions of `deploy/nats/permissions.conf`.
//!
//! Then acquire → heartbeat → usage → release through all three, and the
//! refusals that make the edges trustworthy: the writer cannot UPDATE,
//! DELETE or TRUNCATE the log, a plain connection is refused, and the API's
//! NATS user cannot publish on an event subject.

use crate::harness::{self, token, TestApp};
use licensed::app::Components;
use licensed::auth::dev_issuer::{DEV_AUDIENCE, DEV_ISSUER};
use licensed::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::{Method, StatusCode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The login role the components use (granted `ledger_writer` only).
const APP_ROLE: &str = "licensed_app";

/// The CA file, and a server (and client) certificate for localhost.
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certificates(dir: &Path) -> Certificates {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "License Ledger test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let out = Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    std::fs::write(&out.ca, ca_cert.pem()).unwrap();
    std::fs::write(&out.cert, cert.pem()).unwrap();
    std::fs::write(&out.key, key.serialize_pem()).unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_port(port: u16, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} does not answer on port {port}");
}

/// The three servers; stopped when dropped, even when the test fails.
struct Servers {
    dir: PathBuf,
    pg_port: u16,
    redis_port: u16,
    nats_port: u16,
    children: Vec<Child>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("pg"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The NATS password of a component's user (the server reads them from its environment).
fn nats_password(user: &str) -> String {
    format!("test-password-of-{user}")
}

async fn start_servers() -> (Servers, Certificates) {
    assert!(
        Path::new(PG_BIN).join("initdb").exists(),
        "this test needs Postgres 15's initdb under {PG_BIN} (deploy/local/services.sh installs it)"
    );
    let dir = std::env::temp_dir().join(format!("ll-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut servers = Servers {
        dir: dir.clone(),
        pg_port: free_port(),
        redis_port: free_port(),
        nats_port: free_port(),
        children: Vec::new(),
    };
    let certs = certificates(&dir);
    // Postgres runs as `postgres`: it needs to reach the directory and own its files.
    run(Command::new("chmod").arg("755").arg(&dir));
    let pg = dir.join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    run(Command::new("chown").arg("postgres:postgres").arg(&pg));
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(format!("{PG_BIN}/initdb"))
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
        .arg(&pg));
    // TLS connections only: no `host` line, so a plain TCP connection is refused.
    std::fs::write(
        pg.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )
    .unwrap();
    std::fs::copy(&certs.cert, pg.join("server.crt")).unwrap();
    std::fs::copy(&certs.key, pg.join("server.key")).unwrap();
    run(Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(&pg));
    run(Command::new("chmod").arg("600").arg(pg.join("server.key")));
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(format!("{PG_BIN}/pg_ctl"))
        .arg("-D")
        .arg(&pg)
        .arg("-l")
        .arg(pg.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c ssl=on \
             -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            servers.pg_port,
            pg.display()
        ))
        .args(["-w", "start"]));

    servers.children.push(
        Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--tls-auth-clients", "no"])
            .arg("--tls-port")
            .arg(servers.redis_port.to_string())
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (deploy/local/services.sh installs it)"),
    );

    // The permissions are the deployment's own file, included next to the config.
    let permissions = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/permissions.conf");
    std::fs::copy(permissions, dir.join("permissions.conf")).unwrap();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\n\
             jetstream {{ store_dir: \"{js}\" }}\n\
             tls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  ca_file: \"{ca}\"\n  verify: true\n  timeout: 5\n}}\n\
             include permissions.conf\n",
            port = servers.nats_port,
            js = dir.join("js").display(),
            cert = certs.cert.display(),
            key = certs.key.display(),
            ca = certs.ca.display(),
        ),
    )
    .unwrap();
    let mut nats = Command::new("nats-server");
    nats.arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for user in ["publisher", "signer", "projector", "billing", "api"] {
        nats.env(
            format!("LL_NATS_{}_PASSWORD", user.to_uppercase()),
            nats_password(user),
        );
    }
    servers.children.push(
        nats.spawn()
            .expect("nats-server (deploy/local/services.sh installs it)"),
    );

    wait_port(servers.pg_port, "the TLS Postgres").await;
    wait_port(servers.redis_port, "the TLS Redis").await;
    wait_port(servers.nats_port, "the TLS NATS").await;
    (servers, certs)
}

fn database_url(servers: &Servers, certs: &Certificates, user: &str) -> String {
    format!(
        "postgres://{user}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        servers.pg_port,
        certs.ca.display()
    )
}

/// The configuration of one component: TLS to all three, its own NATS user.
async fn component_config(
    servers: &Servers,
    certs: &Certificates,
    nats_user: Option<&str>,
) -> Config {
    let (_, jwks_url) = harness::issuer().await;
    Config {
        database_url: database_url(servers, certs, APP_ROLE).into(),
        redis_url: format!("rediss://localhost:{}", servers.redis_port).into(),
        redis_ca_file: Some(certs.ca.clone()),
        nats_url: format!("tls://localhost:{}", servers.nats_port),
        nats_ca_file: Some(certs.ca.clone()),
        nats_client_cert: Some(certs.cert.clone()),
        nats_client_key: Some(certs.key.clone()),
        nats_user: nats_user.map(str::to_owned),
        nats_password: nats_user.map(|u| nats_password(u).into()),
        auth_jwks_url: jwks_url,
        auth_issuer: DEV_ISSUER.into(),
        auth_audience: DEV_AUDIENCE.into(),
        signing_key_path: harness::signing_key_path().display().to_string(),
        token_issuer: "https://license-ledger.test".into(),
        reaper_interval_ms: 200,
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    }
}

async fn sql_error_code(pool: &sqlx::PgPool, sql: &str) -> String {
    let err = sqlx::query(sql)
        .execute(pool)
        .await
        .expect_err("refused for ledger_writer");
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("not a database error: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_connection_is_tls_and_every_component_holds_only_its_rights() {
    let (servers, certs) = start_servers().await;

    // Migrations as the superuser; the service's login is only a writer.
    let admin = events::store::connect(&database_url(&servers, &certs, "postgres"), None, 2)
        .await
        .expect("verify-full connection as postgres");
    let store = events::store::EventStore::new(admin.clone());
    store.migrate().await.unwrap();
    // As Cloud SQL creates users: able to create roles, and a member of a
    // role that can (and so able to grant itself ledger_owner), which
    // --grant-writer takes away.
    for sql in [
        format!("CREATE ROLE {APP_ROLE} LOGIN CREATEROLE"),
        "CREATE ROLE platform_admins NOLOGIN CREATEROLE".to_owned(),
        format!("GRANT platform_admins TO {APP_ROLE}"),
    ] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    store.grant_writer(APP_ROLE).await.unwrap();
    assert!(store
        .grant_writer("x\"; DROP TABLE events; --")
        .await
        .is_err());

    let mut apps: Vec<TestApp> = Vec::new();
    for (components, user) in [
        (
            Components {
                publish: true,
                ..Components::default()
            },
            Some("publisher"),
        ),
        (
            Components {
                sign: true,
                ..Components::default()
            },
            Some("signer"),
        ),
        (
            Components {
                project: true,
                ..Components::default()
            },
            Some("projector"),
        ),
        (
            Components {
                reap: true,
                ..Components::default()
            },
            None,
        ),
        (
            Components {
                serve: true,
                ..Components::default()
            },
            Some("api"),
        ),
    ] {
        let config = component_config(&servers, &certs, user).await;
        apps.push(harness::start(config, components).await);
    }
    let api = apps.last().unwrap();

    let license = api.issue("acme", 1, 60).await;
    let alice = token("alice", "acme", false).await;
    let a = api.acquire(&alice, &license, "alice-laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body["license_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "the signer minted over NATS: {}",
        a.body
    );
    let session = a.body["session_id"].as_str().unwrap().to_owned();
    let hb = api.heartbeat(&alice, &session).await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);

    // The projector (NATS → Redis over TLS) shows the seat.
    let admin_token = token("admin", "acme", true).await;
    let path = format!("/api/v1/licenses/{license}/usage");
    let mut projected = false;
    for _ in 0..100 {
        let r = api.call(Method::GET, &path, Some(&admin_token), None).await;
        if r.status == StatusCode::OK && r.body["in_use"] == 1 {
            projected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(projected, "the projection shows the seat in use");
    assert_eq!(
        api.release(&alice, &session).await.status,
        StatusCode::NO_CONTENT
    );

    // A billing consumer reads the stream as its own user, over TLS.
    let billing_nats = licensed::app::NatsOptions {
        url: format!("tls://localhost:{}", servers.nats_port),
        ca_file: Some(certs.ca.clone()),
        client_cert: Some((certs.cert.clone(), certs.key.clone())),
        user: Some(("billing".into(), nats_password("billing").into())),
    }
    .connect()
    .await
    .unwrap();
    let billing_store = projections::billing::BillingStore::open(
        admin.clone(),
        projections::billing::SchemaName::parse("billing").unwrap(),
    )
    .await
    .unwrap();
    let billing = projections::billing::ConsumerConfig {
        until_idle: Some(Duration::from_secs(2)),
        ..projections::billing::ConsumerConfig::new("LICENSE_EVENTS", "license.events", "billing")
    };
    let report = projections::billing::consume(
        &async_nats::jetstream::new(billing_nats),
        &billing,
        &billing_store,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the billing user may consume");
    assert!(report.applied >= 2, "{report:?}");

    // The writer appends, never rewrites.
    let writer = events::store::connect(&database_url(&servers, &certs, APP_ROLE), None, 2)
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET data = data",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "GRANT ledger_owner TO licensed_app",
        "SET ROLE platform_admins",
    ] {
        assert_eq!(sql_error_code(&writer, sql).await, "42501", "{sql}");
    }
    // Only TLS connections are accepted.
    let plain = format!(
        "postgres://{APP_ROLE}@127.0.0.1:{}/postgres?sslmode=disable",
        servers.pg_port
    );
    assert!(events::store::connect(&plain, None, 1).await.is_err());

    // NATS wants a client certificate (`verify: true`): without one, no connection.
    let nats_url = format!("tls://localhost:{}", servers.nats_port);
    let anonymous = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .require_tls(true)
        .user_and_password("api".into(), nats_password("api"))
        .connect(&nats_url)
        .await;
    assert!(anonymous.is_err(), "no client certificate, no connection");
    // The API's NATS user subscribes to TokenIssued; it cannot publish
    // events. The signer cannot pull (or ack) the projector's consumer.
    let event = format!("license.events.acme.{license}.SeatAcquired");
    assert_publish_refused(&nats_url, &certs, "api", &event).await;
    let projector_next = "$JS.API.CONSUMER.MSG.NEXT.LICENSE_EVENTS.projector_ll__explicit";
    assert_publish_refused(&nats_url, &certs, "signer", projector_next).await;
    let projector_ack = "$JS.ACK.LICENSE_EVENTS.projector_ll__explicit.1.1.1.1.0";
    assert_publish_refused(&nats_url, &certs, "signer", projector_ack).await;

    for app in apps {
        app.stop().await;
    }
    drop(servers);
}

/// Connects as `user` (TLS, client certificate) and publishes on `subject`:
/// the server must answer with a permissions violation naming it.
async fn assert_publish_refused(url: &str, certs: &Certificates, user: &str, subject: &str) {
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let nats = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .add_client_certificate(certs.cert.clone(), certs.key.clone())
        .require_tls(true)
        .user_and_password(user.into(), nats_password(user))
        .event_callback(move |event| {
            let tx = errors_tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{user} connects over TLS: {e}"));
    nats.publish(subject.to_owned(), "{}".into()).await.unwrap();
    nats.flush().await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("{user} may publish on {subject}"))
        .unwrap();
    assert!(
        refused.to_lowercase().contains("permissions violation") && refused.contains(subject),
        "{user} on {subject}: {refused}"
    );
}
