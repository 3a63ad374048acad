//! Who may do what. Owns the policy files (principals with roles and attributes, grants; see
//! `policies/README.md`) and the coarse decisions made from them by casbin: may this principal
//! read, write or administer this table. Knows nothing of the wire or of sessions; the session
//! layer asks it about the tables a plan reads and writes (`access`).
//!
//! Fail closed: a policy folder that does not load stops the server at startup, an error while
//! deciding denies, and anything not granted is denied.

pub mod access;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi, RbacApi};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The casbin model: RBAC with role inheritance, objects matched by pattern.
const MODEL: &str = r#"
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = (g(r.sub, p.sub) || p.sub == "*") && regexMatch(r.obj, p.obj) && (r.act == p.act || p.act == "*")
"#;

/// The policies shipped with the server, used when no policy folder is there.
const DEFAULT_POLICIES: &str = include_str!("../../policies/default.toml");

/// What a statement does to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Admin,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Admin => "admin",
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    principal: Vec<PrincipalSpec>,
    #[serde(default)]
    role: Vec<RoleSpec>,
    #[serde(default)]
    grant: Vec<GrantSpec>,
}

/// A user as the policies describe it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSpec {
    name: String,
    #[serde(default)]
    inherits: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantSpec {
    to: String,
    on: String,
    actions: Vec<String>,
}

/// The loaded policies.
pub struct PolicySet {
    principals: HashMap<String, PrincipalSpec>,
    enforcer: Enforcer,
    /// Where they came from (a folder, or the built-in defaults).
    pub source: String,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("source", &self.source)
            .field("principals", &self.principals.len())
            .finish()
    }
}

impl PolicySet {
    /// Load every `*.toml` of `dir`; without a folder there, the built-in defaults.
    pub async fn load(dir: &Path) -> Result<PolicySet> {
        let mut files: Vec<(String, String)> = vec![];
        if dir.is_dir() {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| {
                    Error::Config(format!("cannot read policy folder {}: {e}", dir.display()))
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for p in paths {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    Error::Config(format!("cannot read policy file {}: {e}", p.display()))
                })?;
                files.push((p.display().to_string(), text));
            }
            Self::from_texts(&files, dir.display().to_string()).await
        } else {
            files.push(("built-in default policies".into(), DEFAULT_POLICIES.into()));
            Self::from_texts(&files, "built-in default policies".into()).await
        }
    }

    /// Parse and merge policy file texts (name, text).
    pub async fn from_texts(files: &[(String, String)], source: String) -> Result<PolicySet> {
        let mut merged = PolicyFile::default();
        for (name, text) in files {
            let f: PolicyFile = toml::from_str(text)
                .map_err(|e| Error::Config(format!("policy file {name}: {e}")))?;
            merged.principal.extend(f.principal);
            merged.role.extend(f.role);
            merged.grant.extend(f.grant);
        }
        let model = DefaultModel::from_str(MODEL)
            .await
            .map_err(|e| Error::Config(format!("policy model: {e}")))?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .map_err(|e| Error::Config(format!("policy engine: {e}")))?;
        let fail = |e: casbin::Error| Error::Config(format!("policy engine: {e}"));
        for g in &merged.grant {
            for a in &g.actions {
                let a = a.to_ascii_lowercase();
                if !matches!(a.as_str(), "read" | "write" | "admin" | "*") {
                    return Err(Error::Config(format!(
                        "grant to {} on {}: unknown action {a:?} (read, write, admin)",
                        g.to, g.on
                    )));
                }
                enforcer
                    .add_policy(vec![g.to.clone(), pattern(&g.on), a])
                    .await
                    .map_err(fail)?;
            }
        }
        for r in &merged.role {
            for parent in &r.inherits {
                enforcer
                    .add_role_for_user(&r.name, parent, None)
                    .await
                    .map_err(fail)?;
            }
        }
        let mut principals = HashMap::new();
        for p in merged.principal {
            for role in &p.roles {
                enforcer
                    .add_role_for_user(&p.name, role, None)
                    .await
                    .map_err(fail)?;
            }
            if principals.insert(p.name.clone(), p.clone()).is_some() {
                return Err(Error::Config(format!(
                    "principal {} is described twice in the policies",
                    p.name
                )));
            }
        }
        Ok(PolicySet {
            principals,
            enforcer,
            source,
        })
    }

    /// The policies' description of a user (none: no roles, no attributes).
    pub fn principal(&self, name: &str) -> Option<&PrincipalSpec> {
        self.principals.get(name)
    }

    /// Every role `name` holds, directly or inherited.
    pub fn roles_of(&self, name: &str) -> Vec<String> {
        let mut out = self.enforcer.get_implicit_roles_for_user(name, None);
        out.sort();
        out
    }

    /// May `subject` (a user, or a role it took with SET ROLE) do `action` on `object`
    /// (`schema.table`)? An engine error denies.
    pub fn allows(&self, subject: &str, object: &str, action: Action) -> bool {
        match self.enforcer.enforce((subject, object, action.as_str())) {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::error!(subject, object, error = %e, "policy decision failed: denied");
                false
            }
        }
    }
}

/// A grant's object pattern (`hr.*`, `*`) as the anchored regular expression casbin matches.
fn pattern(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grants_roles_and_default_deny() -> Result<()> {
        let text = r#"
            [[principal]]
            name = "ana"
            roles = ["analyst"]
            attributes = { region = "EU" }

            [[role]]
            name = "hr_manager"
            inherits = ["analyst"]

            [[principal]]
            name = "hiro"
            roles = ["hr_manager"]

            [[grant]]
            to = "analyst"
            on = "hr.*"
            actions = ["read"]

            [[grant]]
            to = "hr_manager"
            on = "hr.emp"
            actions = ["write"]
        "#;
        let p = PolicySet::from_texts(&[("t".into(), text.into())], "test".into()).await?;
        assert!(p.allows("ana", "hr.emp", Action::Read));
        assert!(!p.allows("ana", "hr.emp", Action::Write));
        assert!(
            !p.allows("ana", "sales.orders", Action::Read),
            "default deny"
        );
        assert!(
            !p.allows("ana", "hrx.emp", Action::Read),
            "patterns are anchored"
        );
        assert!(p.allows("hiro", "hr.emp", Action::Read), "inherited");
        assert!(p.allows("hiro", "hr.emp", Action::Write));
        assert!(!p.allows("nobody", "hr.emp", Action::Read));
        assert_eq!(p.roles_of("hiro"), vec!["analyst", "hr_manager"]);
        assert!(
            p.principal("ana")
                .is_some_and(|a| a.attributes.contains_key("region"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn bad_files_are_refused() {
        let bad = [
            "[[grant]]\nto = \"x\"\non = \"*\"\nactions = [\"fly\"]",
            "[[grant]]\nto = \"x\"\n",
            "[[nonsense]]\n",
        ];
        for text in bad {
            assert!(
                PolicySet::from_texts(&[("t".into(), text.into())], "t".into())
                    .await
                    .is_err(),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn the_defaults_load() -> Result<()> {
        let p = PolicySet::load(Path::new("/nonexistent-policy-dir")).await?;
        assert!(p.allows("anyone", "demo.orders", Action::Read));
        Ok(())
    }
}
