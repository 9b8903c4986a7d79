//! `tensoras keys`: works directly on the database, so it also bootstraps a server that
//! is not running yet.

use clap::Subcommand;
use tensoras::auth::{KeySpec, Role, Scope};
use tensoras::config::Config;
use tensoras::store::sqlite::SqliteStore;
use tensoras::store::{MetadataStore, Revocation};

use super::{DataDirArg, PlansArg};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (shown only once).
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// Tenant that will own what the key creates.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Tenant admin: manages its own tenant's keys and functions.
        #[arg(long, conflicts_with = "operator")]
        admin: bool,
        /// Operator: manages the keys of every tenant.
        #[arg(long)]
        operator: bool,
        /// Extra permission, repeatable; `functions:deploy` lets a plain key deploy functions.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Rate-limit plan [default: the tenant's, else the server's default].
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        plans: PlansArg,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set a key's rate-limit plan (`--inherit`: its tenant's, else the default).
    SetPlan {
        /// Key id (`key_...`).
        id: String,
        /// Plan name.
        #[arg(required_unless_present = "inherit")]
        plan: Option<String>,
        /// Drop the key's own plan.
        #[arg(long, conflicts_with = "plan")]
        inherit: bool,
        #[command(flatten)]
        plans: PlansArg,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List active keys (never their secrets).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a key by id (never the last operator key).
    Revoke {
        /// Key id (`key_...`).
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

fn open(data: &DataDirArg) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(&Config::new(&data.data_dir).database_path())
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create { name, tenant, admin, operator, scopes, plan, plans, data } => {
            if let Some(plan) = &plan {
                plans.check(plan)?;
            }
            let scopes = Scope::parse_all(scopes.iter().map(String::as_str)).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let role = if operator {
                Role::Operator
            } else if admin {
                Role::Admin
            } else {
                Role::Member
            };
            let store = open(&data)?;
            let spec = KeySpec { name: &name, tenant: &tenant, role, scopes: &scopes, plan: plan.as_deref() };
            let (key, secret) = tensoras::auth::create_key(&store, &spec)?;
            eprintln!(
                "Created key {} (tenant {}, role {}). Store it now; it is not shown again.",
                key.id,
                key.tenant,
                key.role.as_str()
            );
            println!("{secret}");
        }
        KeysCommand::List { data } => {
            let store = open(&data)?;
            let keys = store.list_keys(None).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{:<22} {:<20} {:<20} {:<9} {:<18} {:<12} created_at", "id", "name", "tenant", "role", "scopes", "plan");
            for k in keys {
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                let scopes = if scopes.is_empty() { "-".to_owned() } else { scopes.join(",") };
                let plan = k.plan.as_deref().unwrap_or("-");
                println!(
                    "{:<22} {:<20} {:<20} {:<9} {:<18} {:<12} {}",
                    k.id,
                    k.name,
                    k.tenant,
                    k.role.as_str(),
                    scopes,
                    plan,
                    k.created_at
                );
            }
        }
        KeysCommand::SetPlan { id, plan, inherit: _, plans, data } => {
            if let Some(plan) = &plan {
                plans.check(plan)?;
            }
            let store = open(&data)?;
            let key = store.set_key_plan(&id, None, plan.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = key.ok_or_else(|| anyhow::anyhow!("no active key with id {id}"))?;
            eprintln!("Key {} now has plan {}.", key.id, key.plan.as_deref().unwrap_or("(its tenant's, else the default)"));
        }
        KeysCommand::Revoke { id, data } => {
            let store = open(&data)?;
            match store.revoke_key(&id, None).map_err(|e| anyhow::anyhow!("{e}"))? {
                Revocation::Revoked => eprintln!("Revoked {id}."),
                Revocation::NotFound => anyhow::bail!("no active key with id {id}"),
                Revocation::LastOperator => {
                    anyhow::bail!("{id} is the last active operator key; create another one (keys create --operator) first")
                }
            }
        }
    }
    Ok(())
}
