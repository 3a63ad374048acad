//! Who may do what. Owns the policy files (principals with roles and attributes, grants; see
//! `policies/README.md`) and the coarse decisions made from them by casbin: may this principal
//! read, write or administer this table. Knows nothing of the wire or of sessions; the session
//! layer asks it about the tables a plan reads and writes (`access`).
//!
//! Fail closed: a policy folder that does not load stops the server at startup, an error while
//! deciding denies, and anything not granted is denied.

pub mod access;
pub mod audit;
pub mod explain;
pub mod lineage;
pub mod matview;
pub mod secure;
pub mod watch;

pub use watch::{PolicyStatus, PolicyWatch, status_udf};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

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
    /// UPDATE of some columns only (a grant with `columns`); `write` includes it.
    Update,
    Admin,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Update => "update",
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
    #[serde(default)]
    row_filter: Vec<RowFilterSpec>,
    #[serde(default)]
    mask: Vec<MaskSpec>,
    #[serde(default)]
    tag: Vec<TagSpec>,
}

/// Classification: `column` of the tables matching `table` carries `tags` (PII.ssn, FIN ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagSpec {
    table: String,
    column: String,
    tags: Vec<String>,
}

fn every_table() -> String {
    "*".into()
}

/// Rows of `table` that principals in `to` may see: those where `filter` is true. `$name` in the
/// predicate is the principal's attribute `name`, bound as a value (never spliced into text).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowFilterSpec {
    #[serde(default)]
    name: Option<String>,
    table: String,
    to: String,
    filter: String,
}

/// How principals in `to` see `column` of `table`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskSpec {
    #[serde(default)]
    name: Option<String>,
    /// A table pattern (default every table).
    #[serde(default = "every_table")]
    table: String,
    /// The column, or ...
    #[serde(default)]
    column: String,
    /// ... every column that carries this classification tag.
    #[serde(default)]
    tag: Option<String>,
    to: String,
    kind: MaskKind,
    /// redact: the constant shown (text columns; other types show NULL)
    #[serde(default)]
    value: Option<String>,
    /// partial: shown before the kept characters
    #[serde(default)]
    prefix: Option<String>,
    /// partial: how many last characters stay visible
    #[serde(default)]
    keep_last: Option<i64>,
    /// round: digits after the point (negative: to tens, hundreds ...)
    #[serde(default)]
    digits: Option<i64>,
    /// a boolean column: where it is true the raw value shows
    #[serde(default)]
    unless: Option<String>,
}

/// What a mask shows in place of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// The column is not there for the user (absent from listings and `*`; NULL elsewhere).
    Deny,
    /// A constant (`value`, default `****`) for text; NULL for other types.
    Redact,
    /// `prefix` and the last `keep_last` characters.
    Partial,
    Nullify,
    /// Dates and timestamps truncated to the year or month.
    Year,
    Month,
    /// Numbers rounded to `digits`.
    Round,
    /// A keyed hash (HMAC) of the text, joinable where the policies mean it to be.
    Hash,
}

/// Classification tags the catalog keeps for a table's columns, by column.
pub type StoredTags = BTreeMap<String, Vec<String>>;

/// Roles and attributes a verified token (JWT) gave a user, beside the policy files'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    pub roles: Vec<String>,
    pub attributes: BTreeMap<String, toml::Value>,
}

/// Who a decision is for: `name` decides (the user, or the role it took with SET ROLE), `user`
/// is whose attributes bind, `claimed` what its token said.
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub user: String,
    pub claimed: Option<std::sync::Arc<Claimed>>,
}

impl Subject {
    /// A user known from the policy files only.
    pub fn user(name: &str) -> Subject {
        Subject {
            name: name.into(),
            user: name.into(),
            claimed: None,
        }
    }
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
    /// With `update`: the only columns it lets UPDATE assign.
    #[serde(default)]
    columns: Option<Vec<String>>,
}

/// The loaded policies.
pub struct PolicySet {
    /// A digest of the policy texts: which policies decided, in the audit record.
    pub version: String,
    /// Grants that name system objects (`lakegate.*`) explicitly; a `*` grant never reaches them.
    system_grants: Vec<(String, String, String)>,
    /// `update` grants: who, on what, which columns.
    column_grants: Vec<(String, regex_lite::Regex, Vec<String>)>,
    /// The key of `hash` masks (policy.mask_key_file or LAKEGATE_MASK_KEY).
    mask_key: Option<Vec<u8>>,
    /// Every grant that lets someone put values into a table: `write`, `admin` and `*` (every
    /// column), `update` (its columns). Decides the keys of `hash` masks ([`Self::hash_key`]).
    write_grants: Vec<(regex_lite::Regex, Option<Vec<String>>)>,
    principals: HashMap<String, PrincipalSpec>,
    row_filters: Vec<(regex_lite::Regex, RowFilterSpec)>,
    masks: Vec<(regex_lite::Regex, MaskSpec)>,
    tags: Vec<(regex_lite::Regex, TagSpec)>,
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
    /// Load every `*.toml` of `dir`. Without a folder there: the built-in defaults when
    /// `configured` is false (no policy folder was named: the embedded default), else nothing is
    /// allowed (fail closed: a named folder that is missing never means "allow all").
    pub async fn load(dir: &Path, configured: bool) -> Result<PolicySet> {
        match watch::read_folder(dir)? {
            Some(files) => Self::from_texts(&files, dir.display().to_string()).await,
            None if configured => {
                tracing::error!(
                    folder = %dir.display(),
                    "the policy folder does not exist: nothing is allowed until it does"
                );
                Self::from_texts(&[], format!("{} (missing: nothing allowed)", dir.display())).await
            }
            None => {
                let files = [("built-in default policies".into(), DEFAULT_POLICIES.into())];
                Self::from_texts(&files, "built-in default policies".into()).await
            }
        }
    }

    /// Parse and merge policy file texts (name, text).
    pub async fn from_texts(files: &[(String, String)], source: String) -> Result<PolicySet> {
        let merged = merge_files(files)?;
        let row_filters = compiled(&merged.row_filter, |r| &r.table)?;
        let tags = compiled(&merged.tag, |t| &t.table)?;
        for m in &merged.mask {
            if m.column.is_empty() == m.tag.is_none() {
                return Err(Error::Config(format!(
                    "a mask on {} names a column or a tag (one of them)",
                    m.table
                )));
            }
        }
        let masks = compiled(&merged.mask, |m| &m.table)?;
        let model = DefaultModel::from_str(MODEL)
            .await
            .map_err(|e| Error::Config(format!("policy model: {e}")))?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .map_err(|e| Error::Config(format!("policy engine: {e}")))?;
        let (column_grants, write_grants) = add_grants(&mut enforcer, &merged.grant).await?;
        let principals = add_roles(&mut enforcer, &merged.role, merged.principal).await?;
        let system_grants = merged
            .grant
            .iter()
            .filter(|g| g.on.starts_with("lakegate."))
            .flat_map(|g| {
                g.actions
                    .iter()
                    .map(|a| (g.to.clone(), g.on.clone(), a.to_ascii_lowercase()))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(PolicySet {
            version: version_of(files),
            system_grants,
            column_grants,
            mask_key: None,
            write_grants,
            principals,
            row_filters,
            masks,
            tags,
            enforcer,
            source,
        })
    }

    /// The key a `hash` mask uses on column `m.column` of `object`, derived from the server's
    /// mask key so that tokens join only where the policies mean them to:
    ///
    /// - a column that some grant lets a non-administrator write (INSERT, UPDATE of it, COPY,
    ///   or any DDL through `admin`) gets a key of its own (`column:<schema.table>.<column>`):
    ///   whoever can put chosen values there and read them back as tokens holds a dictionary of
    ///   guesses, which must not match the tokens of any other column;
    /// - any other column shares the key of its mask's tag (`tag:PII.ssn`) or of its column
    ///   name (`column:ssn`): its values come only from administrators, so its tokens join with
    ///   those of the same tag in every table the policies name (and of the copies
    ///   administrators make with CREATE TABLE AS, whose tags follow the data).
    fn hash_key(&self, m: &MaskSpec, object: &str) -> Option<Vec<u8>> {
        use hmac::{Hmac, Mac};
        let master = self.mask_key.as_deref()?;
        let writable = self.write_grants.iter().any(|(on, columns)| {
            on.is_match(object) && columns.as_ref().is_none_or(|c| c.contains(&m.column))
        });
        let domain = match (&m.tag, writable) {
            (_, true) => format!("column:{object}.{}", m.column),
            (Some(tag), false) => format!("tag:{tag}"),
            (None, false) => format!("column:{}", m.column),
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(master).ok()?;
        mac.update(b"lakegate hash mask\0");
        mac.update(domain.as_bytes());
        Some(mac.finalize().into_bytes().to_vec())
    }

    /// Set the key `hash` masks use (without one, a hash mask denies).
    pub fn with_mask_key(mut self, key: Option<Vec<u8>>) -> Self {
        self.mask_key = key.filter(|k| !k.is_empty());
        self
    }

    /// The policies' description of a user (none: no roles, no attributes).
    pub fn principal(&self, name: &str) -> Option<&PrincipalSpec> {
        self.principals.get(name)
    }

    /// Every role `name` holds in the policy files, directly or inherited.
    fn roles_of(&self, name: &str) -> Vec<String> {
        let mut out = self.enforcer.get_implicit_roles_for_user(name, None);
        out.sort();
        out
    }

    /// May `subject` (a user, or a role it took with SET ROLE) do `action` on `object`
    /// (`schema.table`)? An engine error denies. System objects (`lakegate.*`) need a grant
    /// that names them.
    pub fn allows(&self, subject: &Subject, object: &str, action: Action) -> bool {
        let who = self.identities(subject);
        if object.starts_with("lakegate.") {
            return self.system_grants.iter().any(|(to, on, a)| {
                (to == "*" || who.contains(to))
                    && regex_lite::Regex::new(&pattern(on)).is_ok_and(|r| r.is_match(object))
                    && (a == action.as_str() || a == "*")
            });
        }
        who.iter().any(
            |w| match self.enforcer.enforce((w.as_str(), object, action.as_str())) {
                Ok(allowed) => allowed,
                Err(e) => {
                    tracing::error!(subject = w, object, error = %e, "policy decision failed: denied");
                    false
                }
            },
        )
    }
}

impl PolicySet {
    /// The columns `subject` may assign in an UPDATE of `object` through `update` grants
    /// (a `write` or `admin` grant allows every column; the caller checks that first).
    pub fn updatable_columns(&self, subject: &Subject, object: &str) -> Vec<String> {
        let who = self.identities(subject);
        let mut out: Vec<String> = self
            .column_grants
            .iter()
            .filter(|(to, on, _)| (to == "*" || who.contains(to)) && on.is_match(object))
            .flat_map(|(_, _, c)| c.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The columns of `object` hidden from `subject` (masks of kind `deny`): absent from its
    /// tables' schemas (so from `SELECT *` and listings), 42501 when named.
    pub fn denied_columns(
        &self,
        subject: &Subject,
        object: &str,
        stored: &StoredTags,
    ) -> Vec<String> {
        let who = self.identities(subject);
        let applies = |to: &str| to == "*" || who.iter().any(|w| w == to);
        let mut out: Vec<String> = self
            .masks
            .iter()
            .filter(|(re, m)| m.kind == MaskKind::Deny && re.is_match(object) && applies(&m.to))
            .flat_map(|(_, m)| match &m.tag {
                Some(tag) => self.tagged(object, tag, stored),
                None => vec![m.column.clone()],
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Do any row filter or mask of `object` bind `subject`? (Then its history, statistics and
    /// file metadata are not for `subject`: they tell what the rules hide.)
    pub fn binds(&self, subject: &Subject, object: &str, stored: &StoredTags) -> bool {
        let who = self.identities(subject);
        let applies = |to: &str| to == "*" || who.iter().any(|w| w == to);
        self.row_filters
            .iter()
            .any(|(re, f)| re.is_match(object) && applies(&f.to))
            || self.masks.iter().any(|(re, m)| {
                re.is_match(object)
                    && applies(&m.to)
                    && match &m.tag {
                        Some(tag) => !self.tagged(object, tag, stored).is_empty(),
                        None => true,
                    }
            })
    }

    /// The columns of `object` that carry `tag`.
    /// `stored`: the tags the catalog keeps for the table (set by an administrator or inherited
    /// by CREATE TABLE AS), beside the policy files'.
    fn tagged(&self, object: &str, tag: &str, stored: &StoredTags) -> Vec<String> {
        let mut out: Vec<String> = self
            .tags
            .iter()
            .filter(|(re, t)| re.is_match(object) && t.tags.iter().any(|x| x == tag))
            .map(|(_, t)| t.column.clone())
            .chain(
                stored
                    .iter()
                    .filter(|(_, tags)| tags.iter().any(|x| x == tag))
                    .map(|(c, _)| c.clone()),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The columns masks of `which` name (a mask by column: its column; any mask: its `unless`
    /// column), with the mask naming each.
    fn mask_columns(
        &self,
        which: impl Fn(&regex_lite::Regex, &MaskSpec) -> bool,
    ) -> Vec<(String, String)> {
        let mut out = vec![];
        for (_, m) in self.masks.iter().filter(|(re, m)| which(re, m)) {
            let name = m
                .name
                .clone()
                .unwrap_or_else(|| format!("mask on {}", m.table));
            if m.tag.is_none() {
                out.push((name.clone(), m.column.clone()));
            }
            if let Some(u) = &m.unless {
                out.push((name, u.clone()));
            }
        }
        out
    }

    /// The columns of `object` the policy files name for that table exactly (masks by column,
    /// tags, a mask's `unless` column, `update` grants' columns), with the policy naming each:
    /// the table must have them, else its policies cannot be what their authors meant and it is
    /// not readable past them (fail closed). Patterns with `*` name no table exactly.
    pub fn named_columns(&self, object: &str) -> Vec<(String, String)> {
        let exact = |glob: &str| !glob.contains('*') && glob == object;
        let mut out = self.mask_columns(|_, m| exact(&m.table));
        for (_, t) in &self.tags {
            if exact(&t.table) {
                out.push((
                    format!("tag {} on {}", t.tags.join(", "), t.table),
                    t.column.clone(),
                ));
            }
        }
        out
    }

    /// The columns of `object` some policy relies on by name, wherever its pattern matches:
    /// masked or tagged columns, a mask's `unless` column, the columns a row filter reads
    /// (names in its predicate), those `update` grants name. Renaming one would
    /// silently unbind its policy: refused until the policy files follow.
    pub fn governed_columns(&self, object: &str) -> Vec<(String, String)> {
        // (Masks by tag: the policy files' tags are below; tags the catalog keeps move with
        // their column.)
        let mut out = self.mask_columns(|re, _| re.is_match(object));
        for (re, f) in &self.row_filters {
            if re.is_match(object) {
                let name = f
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("row filter on {}", f.table));
                for c in filter_columns(&f.filter) {
                    out.push((name.clone(), c));
                }
            }
        }
        for (re, t) in &self.tags {
            if re.is_match(object) {
                out.push((format!("tag {}", t.tags.join(", ")), t.column.clone()));
            }
        }
        for (to, on, columns) in &self.column_grants {
            if on.is_match(object) {
                for c in columns {
                    out.push((format!("update grant to {to}"), c.clone()));
                }
            }
        }
        out
    }

    /// The classification tags of `object.column` (policy files and `stored`).
    pub fn tags_of(&self, object: &str, column: &str, stored: &StoredTags) -> Vec<String> {
        let mut out: Vec<String> = self
            .tags
            .iter()
            .filter(|(re, t)| re.is_match(object) && t.column == column)
            .flat_map(|(_, t)| t.tags.clone())
            .chain(stored.get(column).cloned().unwrap_or_default())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Who `subject` is for grants, row filters and masks: the user, every role the policies
    /// give it, the roles its token claimed, and the role it took with SET ROLE (with that
    /// role's roles). Restrictions follow the person: a row filter or mask that names the user
    /// (or any role it holds) binds it whatever role the session took; SET ROLE only adds.
    fn identities(&self, subject: &Subject) -> Vec<String> {
        let mut out = vec![subject.user.clone()];
        out.extend(self.roles_of(&subject.user));
        if let Some(c) = &subject.claimed {
            for r in &c.roles {
                out.push(r.clone());
                out.extend(self.roles_of(r));
            }
        }
        if subject.name != subject.user {
            out.push(subject.name.clone());
            out.extend(self.roles_of(&subject.name));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Every role `subject`'s user holds (from the policies or its token), for SET ROLE.
    pub fn roles_held(&self, subject: &Subject) -> Vec<String> {
        let user = Subject {
            name: subject.user.clone(),
            ..subject.clone()
        };
        let mut out = self.identities(&user);
        out.retain(|r| r != &subject.user);
        out
    }

    /// The attributes bound for `subject`'s user: the policy files', then its token's claims.
    pub fn attributes(&self, subject: &Subject) -> BTreeMap<String, toml::Value> {
        let mut out = self
            .principals
            .get(&subject.user)
            .map(|p| p.attributes.clone())
            .unwrap_or_default();
        if let Some(c) = &subject.claimed {
            out.extend(c.attributes.clone());
        }
        out
    }

    /// The row filters and masks of `object` for `subject` (the user, or the role it took),
    /// with `user`'s attributes bound. `parse` turns a predicate into an expression over the
    /// table's columns. Several filters AND together; a column with several masks is nulled.
    /// Any error denies (fail closed).
    pub fn rules_for(
        &self,
        subject: &Subject,
        object: &str,
        schema: &datafusion::common::DFSchemaRef,
        stored: &StoredTags,
        parse: &dyn Fn(&str) -> Result<datafusion::logical_expr::Expr>,
    ) -> Result<Option<secure::TableRules>> {
        let user = subject.user.as_str();
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::Expr;
        let who = self.identities(subject);
        let applies = |to: &str| to == "*" || who.iter().any(|w| w == to);
        let denied = |why: String| {
            tracing::error!(object, user, "{why}");
            Error::PermissionDenied(format!(
                "permission denied for table {}: its policy cannot be applied",
                object.rsplit('.').next().unwrap_or(object)
            ))
        };
        let attributes = self.attributes(subject);
        let mut rules = secure::TableRules::default();
        for (re, f) in &self.row_filters {
            if !re.is_match(object) || !applies(&f.to) {
                continue;
            }
            let e = parse(&f.filter).map_err(|e| denied(format!("row filter: {e}")))?;
            let mut missing = None;
            let e = e
                .transform(|e| match &e {
                    Expr::Placeholder(p) => {
                        let key = p.id.trim_start_matches('$');
                        match attributes.get(key) {
                            Some(v) => Ok(Transformed::yes(Expr::Literal(
                                secure::attribute_literal(v)?,
                                None,
                            ))),
                            None => {
                                missing = Some(key.to_string());
                                Ok(Transformed::no(e))
                            }
                        }
                    }
                    _ => Ok(Transformed::no(e)),
                })
                .map_err(|e| denied(format!("row filter: {e}")))?
                .data;
            if let Some(k) = missing {
                return Err(denied(format!("row filter needs attribute {k} of {user}")));
            }
            rules.filter = Some(match rules.filter.take() {
                Some(prev) => prev.and(e),
                None => e,
            });
            rules.applied.push(
                f.name
                    .clone()
                    .unwrap_or_else(|| format!("row filter on {}", f.table)),
            );
        }
        for (re, m) in &self.masks {
            if !re.is_match(object) || !applies(&m.to) {
                continue;
            }
            let columns: Vec<String> = match &m.tag {
                Some(tag) => self.tagged(object, tag, stored),
                None => vec![m.column.clone()],
            };
            for column in columns {
                let m = &MaskSpec {
                    column,
                    ..m.clone()
                };
                let Some((q, field)) = schema
                    .iter()
                    .find(|(_, f)| f.name() == &m.column)
                    .map(|(q, f)| (q.cloned(), f.clone()))
                else {
                    continue;
                };
                let col = Expr::Column(datafusion::common::Column::new(q.clone(), field.name()));
                let key = self.hash_key(m, object);
                let masked = mask_expr(m, col.clone(), field.data_type(), key.as_deref())
                    .map_err(|e| denied(format!("mask {}: {e}", m.column)))?;
                let masked = match &m.unless {
                    Some(c) => {
                        let cond = Expr::Column(datafusion::common::Column::new(q.clone(), c));
                        datafusion::logical_expr::when(cond.is_true(), col)
                            .otherwise(masked)
                            .map_err(|e| denied(format!("mask {}: {e}", m.column)))?
                    }
                    None => masked,
                };
                if m.kind == MaskKind::Deny {
                    rules.denied.push(m.column.clone());
                }
                if let Some(existing) = rules.masks.iter_mut().find(|(c, _)| c == &m.column) {
                    existing.1 = typed_null(field.data_type());
                } else {
                    rules.masks.push((m.column.clone(), masked));
                }
                rules.applied.push(
                    m.name
                        .clone()
                        .unwrap_or_else(|| format!("mask on {}.{}", m.table, m.column)),
                );
            }
        }
        Ok(if rules.applied.is_empty() {
            None
        } else {
            Some(rules)
        })
    }
}

/// The policies' version: a digest of the files' names and texts.
fn version_of(files: &[(String, String)]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (name, text) in files {
        h.update(name.as_bytes());
        h.update(text.as_bytes());
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// The files' sections, one list of each kind.
fn merge_files(files: &[(String, String)]) -> Result<PolicyFile> {
    let mut merged = PolicyFile::default();
    for (name, text) in files {
        let f: PolicyFile =
            toml::from_str(text).map_err(|e| Error::Config(format!("policy file {name}: {e}")))?;
        merged.principal.extend(f.principal);
        merged.role.extend(f.role);
        merged.grant.extend(f.grant);
        merged.row_filter.extend(f.row_filter);
        merged.mask.extend(f.mask);
        merged.tag.extend(f.tag);
    }
    Ok(merged)
}

/// A table pattern (`hr.*`) as a regular expression.
fn compile(glob: &str) -> Result<regex_lite::Regex> {
    regex_lite::Regex::new(&pattern(glob))
        .map_err(|e| Error::Config(format!("policy table pattern {glob:?}: {e}")))
}

/// Each spec with its table pattern compiled.
fn compiled<T: Clone>(
    specs: &[T],
    table: impl Fn(&T) -> &String,
) -> Result<Vec<(regex_lite::Regex, T)>> {
    specs
        .iter()
        .map(|s| Ok((compile(table(s))?, s.clone())))
        .collect()
}

/// Grants per column of UPDATE, and the patterns some grant lets a user write.
type WriteGrants = (
    Vec<(String, regex_lite::Regex, Vec<String>)>,
    Vec<(regex_lite::Regex, Option<Vec<String>>)>,
);

/// The grants into the policy engine; the column and write grants they make.
async fn add_grants(enforcer: &mut Enforcer, grants: &[GrantSpec]) -> Result<WriteGrants> {
    let fail = |e: casbin::Error| Error::Config(format!("policy engine: {e}"));
    let mut column_grants = vec![];
    let mut write_grants = vec![];
    for g in grants {
        for a in &g.actions {
            let a = a.to_ascii_lowercase();
            if !matches!(a.as_str(), "read" | "write" | "update" | "admin" | "*") {
                return Err(Error::Config(format!(
                    "grant to {} on {}: unknown action {a:?} (read, write, update, admin)",
                    g.to, g.on
                )));
            }
            match (a.as_str(), &g.columns) {
                ("update", Some(cols)) if !cols.is_empty() => {
                    column_grants.push((g.to.clone(), compile(&g.on)?, cols.clone()));
                }
                ("update", _) => {
                    return Err(Error::Config(format!(
                        "grant to {} on {}: update names its columns (columns = [...]); \
                         write allows every column",
                        g.to, g.on
                    )));
                }
                (_, Some(_)) => {
                    return Err(Error::Config(format!(
                        "grant to {} on {}: columns go with the update action only",
                        g.to, g.on
                    )));
                }
                _ => {}
            }
            match a.as_str() {
                "write" | "admin" | "*" => write_grants.push((compile(&g.on)?, None)),
                "update" => write_grants.push((compile(&g.on)?, g.columns.clone())),
                _ => {}
            }
            enforcer
                .add_policy(vec![g.to.clone(), pattern(&g.on), a])
                .await
                .map_err(fail)?;
        }
    }
    Ok((column_grants, write_grants))
}

/// Roles' inheritance and principals' roles into the policy engine; the principals by name.
async fn add_roles(
    enforcer: &mut Enforcer,
    roles: &[RoleSpec],
    principals: Vec<PrincipalSpec>,
) -> Result<HashMap<String, PrincipalSpec>> {
    let fail = |e: casbin::Error| Error::Config(format!("policy engine: {e}"));
    for r in roles {
        for parent in &r.inherits {
            enforcer
                .add_role_for_user(&r.name, parent, None)
                .await
                .map_err(fail)?;
        }
    }
    let mut by_name = HashMap::new();
    for p in principals {
        for role in &p.roles {
            enforcer
                .add_role_for_user(&p.name, role, None)
                .await
                .map_err(fail)?;
        }
        if by_name.insert(p.name.clone(), p.clone()).is_some() {
            return Err(Error::Config(format!(
                "principal {} is described twice in the policies",
                p.name
            )));
        }
    }
    Ok(by_name)
}

fn typed_null(dt: &datafusion::arrow::datatypes::DataType) -> datafusion::logical_expr::Expr {
    use datafusion::logical_expr::{Expr, cast};
    cast(
        Expr::Literal(datafusion::common::ScalarValue::Null, None),
        dt.clone(),
    )
}

/// A mask's expression over `col`, of `col`'s own type.
fn mask_expr(
    m: &MaskSpec,
    col: datafusion::logical_expr::Expr,
    dt: &datafusion::arrow::datatypes::DataType,
    key: Option<&[u8]>,
) -> Result<datafusion::logical_expr::Expr> {
    use datafusion::arrow::datatypes::DataType as D;
    use datafusion::logical_expr::{Expr, cast, lit};
    let text = matches!(dt, D::Utf8 | D::LargeUtf8 | D::Utf8View);
    use MaskKind as K;
    Ok(match m.kind {
        // Hidden from the session's tables (denied_columns); NULL wherever it still reaches a
        // scan (a view's, time travel), never its value.
        K::Nullify | K::Deny => typed_null(dt),
        K::Redact if text => cast(
            lit(m.value.clone().unwrap_or_else(|| "****".into())),
            dt.clone(),
        ),
        K::Redact => typed_null(dt),
        K::Hash if text => match key {
            Some(k) => cast(
                secure::KeyedHash::udf(k).call(vec![cast(col, D::Utf8)]),
                dt.clone(),
            ),
            None => {
                return Err(Error::Config(
                    "a hash mask needs a key: set policy.mask_key_file or LAKEGATE_MASK_KEY".into(),
                ));
            }
        },
        K::Partial if text => {
            let keep = m.keep_last.unwrap_or(4);
            let prefix = m.prefix.clone().unwrap_or_default();
            cast(
                datafusion::functions::string::expr_fn::concat(vec![
                    lit(prefix),
                    datafusion::functions::unicode::expr_fn::right(col, lit(keep)),
                ]),
                dt.clone(),
            )
        }
        K::Year | K::Month if matches!(dt, D::Date32 | D::Date64 | D::Timestamp(..)) => cast(
            datafusion::functions::datetime::expr_fn::date_trunc(
                lit(if m.kind == K::Year { "year" } else { "month" }),
                col,
            ),
            dt.clone(),
        ),
        K::Round if dt.is_numeric() => cast(
            datafusion::functions::math::expr_fn::round(vec![
                cast(col, D::Float64),
                lit(m.digits.unwrap_or(0)),
            ]),
            dt.clone(),
        ),
        other => {
            return Err(Error::Config(format!(
                "a {} mask does not fit a column of type {dt}",
                format!("{other:?}").to_lowercase()
            )));
        }
    })
    .map(|e: Expr| e)
}

/// The names a row filter's predicate uses (unquoted ones folded to lower case): its columns,
/// and maybe a function name or two, which only make a rename refuse more.
fn filter_columns(sql: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::ast::{Expr, visit_expressions};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    let Ok(mut parser) =
        datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)
    else {
        return vec![];
    };
    let Ok(expr) = parser.parse_expr() else {
        return vec![];
    };
    let fold = |i: &datafusion::sql::sqlparser::ast::Ident| {
        if i.quote_style.is_some() {
            i.value.clone()
        } else {
            i.value.to_lowercase()
        }
    };
    let mut out = vec![];
    let _ = visit_expressions(&expr, |e| {
        match e {
            Expr::Identifier(i) => out.push(fold(i)),
            Expr::CompoundIdentifier(parts) => out.extend(parts.last().map(fold)),
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
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
        assert!(p.allows(&Subject::user("ana"), "hr.emp", Action::Read));
        assert!(!p.allows(&Subject::user("ana"), "hr.emp", Action::Write));
        assert!(
            !p.allows(&Subject::user("ana"), "sales.orders", Action::Read),
            "default deny"
        );
        assert!(
            !p.allows(&Subject::user("ana"), "hrx.emp", Action::Read),
            "patterns are anchored"
        );
        assert!(
            p.allows(&Subject::user("hiro"), "hr.emp", Action::Read),
            "inherited"
        );
        assert!(p.allows(&Subject::user("hiro"), "hr.emp", Action::Write));
        assert!(!p.allows(&Subject::user("nobody"), "hr.emp", Action::Read));
        assert_eq!(
            p.roles_held(&Subject::user("hiro")),
            vec!["analyst", "hr_manager"]
        );
        // A token's roles and attributes count for its user, never for a role it took.
        let claimed = Subject {
            name: "tok".into(),
            user: "tok".into(),
            claimed: Some(std::sync::Arc::new(Claimed {
                roles: vec!["hr_manager".into()],
                attributes: [("region".to_string(), toml::Value::String("US".into()))].into(),
            })),
        };
        assert!(p.allows(&claimed, "hr.emp", Action::Write));
        assert!(p.allows(&claimed, "hr.emp", Action::Read), "inherited");
        assert_eq!(p.attributes(&claimed)["region"].as_str(), Some("US"));
        assert!(
            p.principal("ana")
                .is_some_and(|a| a.attributes.contains_key("region"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn masks_by_tag_reach_every_tagged_column() -> Result<()> {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let text = r#"
            [[tag]]
            table = "*"
            column = "email"
            tags = ["PII.email"]

            [[mask]]
            tag = "PII.email"
            to = "*"
            kind = "redact"
        "#;
        let p = PolicySet::from_texts(&[("t".into(), text.into())], "test".into()).await?;
        let schema =
            std::sync::Arc::new(datafusion::common::DFSchema::try_from(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("email", DataType::Utf8, true),
            ]))?);
        let parse = |_: &str| -> Result<datafusion::logical_expr::Expr> {
            Err(Error::internal("no filters here"))
        };
        for table in ["crm.customers", "sales.leads"] {
            let rules = p
                .rules_for(
                    &Subject::user("anyone"),
                    table,
                    &schema,
                    &StoredTags::new(),
                    &parse,
                )?
                .expect("masked");
            assert_eq!(rules.masks.len(), 1);
            assert_eq!(rules.masks[0].0, "email");
        }
        assert_eq!(
            p.tags_of("crm.customers", "email", &StoredTags::new()),
            vec!["PII.email"]
        );
        // Tags the catalog keeps (an administrator's, or inherited by CREATE TABLE AS) count too.
        let stored: StoredTags = [("contact".to_string(), vec!["PII.email".to_string()])].into();
        let schema =
            std::sync::Arc::new(datafusion::common::DFSchema::try_from(Schema::new(vec![
                Field::new("contact", DataType::Utf8, true),
            ]))?);
        let rules = p
            .rules_for(&Subject::user("x"), "crm.copy", &schema, &stored, &parse)?
            .expect("masked by a stored tag");
        assert_eq!(rules.masks[0].0, "contact");
        Ok(())
    }

    #[tokio::test]
    async fn bad_files_are_refused() {
        let bad = [
            "[[grant]]\nto = \"x\"\non = \"*\"\nactions = [\"fly\"]",
            "[[grant]]\nto = \"x\"\n",
            "[[nonsense]]\n",
            "[[grant]]\nto = \"x\"\non = \"*\"\nactions = [\"update\"]",
            "[[grant]]\nto = \"x\"\non = \"*\"\nactions = [\"read\"]\ncolumns = [\"a\"]",
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
        let p = PolicySet::load(Path::new("/nonexistent-policy-dir"), false).await?;
        assert!(p.allows(&Subject::user("anyone"), "demo.orders", Action::Read));
        // A folder that was named and is missing allows nothing (never the defaults).
        let p = PolicySet::load(Path::new("/nonexistent-policy-dir"), true).await?;
        assert!(!p.allows(&Subject::user("anyone"), "demo.orders", Action::Read));
        Ok(())
    }
}
