//! `licensed all --dev`: everything in one process against the local
//! services, with a development token issuer (its JWKS served by this
//! process under `/dev`), a local signing key, a demo license, and a printed
//! `curl` that acquires a seat. Keys live in `.dev/` (generated once).

use crate::auth::dev_issuer::{DevIssuer, DEV_AUDIENCE, DEV_ISSUER};
use crate::auth::{ADMIN_ROLE, VENDOR_ROLE};
use crate::config::Config;
use crate::service::{Actor, Licenses};
use events::ids::{ProductId, TenantId, UserId};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Tenant of the demo license.
pub const DEMO_TENANT: &str = "demo";

/// Points the configuration at the dev issuer served on `addr`.
pub fn configure(config: &mut Config, addr: SocketAddr) {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    config.auth_jwks_url = format!("http://{host}/dev/.well-known/jwks.json");
    config.auth_issuer = DEV_ISSUER.to_owned();
    config.auth_audience = DEV_AUDIENCE.to_owned();
}

/// The dev issuer (key generated on first use).
pub fn issuer(dir: &Path) -> anyhow::Result<DevIssuer> {
    DevIssuer::load_or_generate(dir)
}

/// Creates the demo license when the demo tenant has none; returns its id.
pub async fn ensure_demo_license(licenses: &Licenses) -> anyhow::Result<events::ids::LicenseId> {
    let admin = Actor {
        tenant: TenantId::parse(DEMO_TENANT)?,
        user: UserId::parse("dev-admin")?,
        admin: true,
        groups: Vec::new(),
        correlation_id: Some("dev-setup".into()),
    };
    if let Ok(id) = licenses.resolve_license(&admin, None).await {
        return Ok(id);
    }
    let state = licenses
        .issue(&admin, ProductId::parse("demo-app")?, 5, 360, None)
        .await?;
    state
        .issued
        .map(|i| i.license_id)
        .ok_or_else(|| anyhow::anyhow!("the demo license was not issued"))
}

/// Prints how to call the running system.
pub fn print_banner(
    issuer: &DevIssuer,
    addr: SocketAddr,
    license: events::ids::LicenseId,
) -> anyhow::Result<()> {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let day = Duration::from_secs(24 * 3600);
    let user = issuer.mint("dev-user", DEMO_TENANT, &[], day, DEV_ISSUER, DEV_AUDIENCE)?;
    let admin = issuer.mint(
        "dev-admin",
        DEMO_TENANT,
        &[ADMIN_ROLE.to_owned(), VENDOR_ROLE.to_owned()],
        day,
        DEV_ISSUER,
        DEV_AUDIENCE,
    )?;
    println!(
        "\nLicense Ledger is running (dev mode) on http://{host}\n\
         demo license {license} (tenant {DEMO_TENANT}, 5 seats)\n\n\
         Acquire a seat:\n\n\
         curl -s -X POST http://{host}/api/v1/licenses/acquire \\\n  -H 'Authorization: Bearer {user}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{{\"hardware_id\":\"dev-laptop-1\"}}'\n\n\
         Admin token (license-admin and license-vendor roles):\n{admin}\n\n\
         Web console: http://{host}/console (sign in with the admin token)\n\
         Swagger UI: http://{host}/api/docs   OpenAPI: http://{host}/api/v1/openapi.json\n"
    );
    Ok(())
}
