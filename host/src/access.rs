//! Roles and scopes of API keys (docs/security.md): plain values, below both the key store
//! and the request layer that checks them.

/// What a key may manage beyond the ordinary API of its tenant (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uses its tenant's API; deploys functions only with the `functions:deploy` scope.
    Member,
    /// Tenant admin: manages the keys and functions of its own tenant only.
    Admin,
    /// Runs the server: manages keys of every tenant, including other operators.
    Operator,
}

impl Role {
    /// Name in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }

    /// Parses a name written by [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// A permission added to a key on top of its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Deploy and delete functions of the key's tenant.
    #[serde(rename = "functions:deploy")]
    FunctionsDeploy,
}

impl Scope {
    /// Every scope, for messages listing the valid ones.
    pub const ALL: [Scope; 1] = [Scope::FunctionsDeploy];

    /// Name in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FunctionsDeploy => "functions:deploy",
        }
    }

    /// Parses a name written by [`Scope::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Parses a list of scope names into a sorted set, naming the first unknown one.
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Self>, String> {
        let mut scopes = Vec::new();
        for name in names {
            let scope = Self::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope '{name}'; valid scopes: {}", known.join(", "))
            })?;
            scopes.push(scope);
        }
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }
}

/// Whether a key with `role` and `scopes` may deploy and delete functions of its tenant.
pub fn may_deploy(role: Role, scopes: &[Scope]) -> bool {
    role >= Role::Admin || scopes.contains(&Scope::FunctionsDeploy)
}
