//! `tensoras tenants`: a tenant's plan and monthly budget, set directly in the database
//! (the API's `PATCH /v1/tenants/{name}` does the same for a running server's operator).

use clap::Subcommand;
use tensoras::config::Config;
use tensoras::store::sqlite::SqliteStore;
use tensoras::store::{MetadataStore, TenantRecord};
use tensoras::usage::{nano_from_usd, usd_from_nano};

use super::{DataDirArg, PlansArg};

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Show a tenant's plan and monthly budget.
    Show {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set a tenant's plan (for its keys that have none) and monthly budget.
    Set {
        /// Tenant name.
        name: String,
        /// Plan of its keys that have none of their own.
        #[arg(long, conflicts_with = "inherit_plan")]
        plan: Option<String>,
        /// Drop the tenant's plan: its keys take the server's default.
        #[arg(long)]
        inherit_plan: bool,
        /// Most the tenant may spend per calendar month (UTC), in US dollars, at the
        /// catalogue's prices; past it inference answers 429 `insufficient_quota`.
        #[arg(long, conflicts_with = "no_budget", value_name = "USD")]
        monthly_budget_usd: Option<f64>,
        /// Drop the tenant's budget.
        #[arg(long)]
        no_budget: bool,
        #[command(flatten)]
        plans: PlansArg,
        #[command(flatten)]
        data: DataDirArg,
    },
}

fn describe(t: &TenantRecord) -> String {
    let budget = t.monthly_budget_nano_usd.map_or("none".to_owned(), |b| format!("${:.6}", usd_from_nano(b)));
    format!("tenant {}: plan {}, monthly budget {budget}", t.name, t.plan.as_deref().unwrap_or("(the default)"))
}

pub fn run(cmd: TenantsCommand) -> anyhow::Result<()> {
    match cmd {
        TenantsCommand::Show { name, data } => {
            let store = SqliteStore::open(&Config::new(&data.data_dir).database_path())?;
            let t = store.tenant(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", describe(&t.unwrap_or(TenantRecord { name, ..TenantRecord::default() })));
        }
        TenantsCommand::Set { name, plan, inherit_plan, monthly_budget_usd, no_budget, plans, data } => {
            anyhow::ensure!(tensoras::ids::valid_name(&name), "tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'");
            if let Some(plan) = &plan {
                plans.check(plan)?;
            }
            let budget = match monthly_budget_usd {
                Some(usd) => {
                    Some(nano_from_usd(usd).ok_or_else(|| anyhow::anyhow!("--monthly-budget-usd must be a number >= 0"))?)
                }
                None => None,
            };
            let store = SqliteStore::open(&Config::new(&data.data_dir).database_path())?;
            let mut t = store
                .tenant(&name)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .unwrap_or(TenantRecord { name, ..TenantRecord::default() });
            if plan.is_some() || inherit_plan {
                t.plan = plan;
            }
            if budget.is_some() || no_budget {
                t.monthly_budget_nano_usd = budget;
            }
            store.put_tenant(&t).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("{}", describe(&t));
        }
    }
    Ok(())
}
