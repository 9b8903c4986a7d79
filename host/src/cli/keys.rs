//! `tensoras keys`: works directly on the database, so it also bootstraps a server that
//! is not running yet.

use clap::Subcommand;
use tensoras::config::Config;
use tensoras::store::MetadataStore;
use tensoras::store::sqlite::SqliteStore;

use super::DataDirArg;

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
        /// Allow the key to manage keys.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List active keys (never their secrets).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a key by id.
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
        KeysCommand::Create { name, tenant, admin, data } => {
            let store = open(&data)?;
            let (key, secret) = tensoras::auth::create_key(&store, &name, &tenant, admin)?;
            eprintln!("Created key {} (tenant {}, admin: {}). Store it now; it is not shown again.", key.id, key.tenant, key.admin);
            println!("{secret}");
        }
        KeysCommand::List { data } => {
            let store = open(&data)?;
            let keys = store.list_keys().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{:<22} {:<20} {:<20} {:<6} created_at", "id", "name", "tenant", "admin");
            for k in keys {
                println!("{:<22} {:<20} {:<20} {:<6} {}", k.id, k.name, k.tenant, k.admin, k.created_at);
            }
        }
        KeysCommand::Revoke { id, data } => {
            let store = open(&data)?;
            if !store.revoke_key(&id).map_err(|e| anyhow::anyhow!("{e}"))? {
                anyhow::bail!("no active key with id {id}");
            }
            eprintln!("Revoked {id}.");
        }
    }
    Ok(())
}
