//! Which licenses a command works on (`--license` or `--tenant`) and over
//! which window (`--from`, `--to`).

use crate::time::parse_time;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use events::ids::{LicenseId, TenantId};
use events::store::EventStore;

/// The licenses and the window of `report` and `what-if`.
#[derive(Debug, Args)]
pub struct Window {
    /// One license.
    #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
    pub license: Option<String>,
    /// Every license of a tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Window start (inclusive).
    #[arg(long)]
    pub from: String,
    /// Window end (exclusive).
    #[arg(long)]
    pub to: String,
}

impl Window {
    /// The licenses it names and its bounds, from the log.
    pub async fn resolve(
        &self,
        store: &EventStore,
    ) -> anyhow::Result<(Vec<LicenseId>, DateTime<Utc>, DateTime<Utc>)> {
        let (from, to) = (parse_time(&self.from)?, parse_time(&self.to)?);
        let licenses = chosen_licenses(store, &self.license, &self.tenant)
            .await?
            .context("pass --license or --tenant")?;
        Ok((licenses, from, to))
    }
}

/// The licenses `--license` or `--tenant` name (`None` when neither is given).
pub async fn chosen_licenses(
    store: &EventStore,
    license: &Option<String>,
    tenant: &Option<String>,
) -> anyhow::Result<Option<Vec<LicenseId>>> {
    Ok(match (license, tenant) {
        (Some(id), _) => Some(vec![id
            .parse::<LicenseId>()
            .map_err(|e| anyhow::anyhow!("--license: {e}"))?]),
        (None, Some(t)) => {
            let tenant = TenantId::parse(t).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            Some(crate::history::tenant_licenses(store, &tenant).await?)
        }
        (None, None) => None,
    })
}
