//! The session's DataFusion context: built from the principal and settings, rebuilt when they
//! change.

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use super::settings::Settings;
use super::{Engine, Principal, Session, cancel_backend};
use crate::pg::functions::SessionValues;
use crate::policy::Action;

impl Session {
    pub(super) fn build_context(
        engine: &Engine,
        p: &Principal,
        settings: &Settings,
        pid: i32,
        pending_settings: &crate::pg::functions::PendingSettings,
        overlays: &crate::catalog::overlay::Overlays,
    ) -> SessionContext {
        let catalog = engine.planner.catalog();
        let schema = settings
            .search_path()
            .into_iter()
            .find(|s| catalog.schema_exists(s))
            .unwrap_or_else(|| crate::catalog::DEFAULT_SCHEMA.to_string());
        // The session's own temporary tables are its user's (made from what it may read).
        let own_temp = crate::catalog::temp_schema(pid);
        // Listings show the tables this principal may read (administrators: all).
        let visible: Option<crate::catalog::provider_visible::Visible> = if p.admin {
            None
        } else {
            let in_force = engine.policies.clone();
            let subject = p.subject();
            let own_temp = own_temp.clone();
            Some(Arc::new(move |schema: &str, table: &str| {
                if schema == own_temp {
                    return true;
                }
                let object = format!("{schema}.{table}");
                let policies = in_force.read().unwrap_or_else(|e| e.into_inner()).clone();
                policies.allows(&subject, &object, Action::Read)
                    || policies.allows(&subject, &object, Action::Admin)
            }))
        };
        let hidden: Option<crate::catalog::provider_visible::Hidden> = if p.admin {
            None
        } else {
            let in_force = engine.policies.clone();
            let subject = p.subject();
            let catalog = catalog.clone();
            Some(Arc::new(move |schema: &str, table: &str| {
                let object = format!("{schema}.{table}");
                let stored = match catalog.relation(schema, table) {
                    Some(crate::catalog::Relation::Table(t)) => t.tags,
                    _ => Default::default(),
                };
                let policies = in_force.read().unwrap_or_else(|e| e.into_inner()).clone();
                policies.denied_columns(&subject, &object, &stored)
            }))
        };
        let privilege: Option<crate::pg::functions::Privilege> = if p.admin {
            None
        } else {
            let in_force = engine.policies.clone();
            let subject = p.subject();
            let temp_catalog = catalog.clone();
            Some(Arc::new(
                move |schema: &str, table: &str, privilege: &str| {
                    if schema == own_temp {
                        return temp_catalog.relation(schema, table).is_some();
                    }
                    let object = format!("{schema}.{table}");
                    let policies = in_force.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let any = |actions: &[Action]| {
                        actions
                            .iter()
                            .any(|a| policies.allows(&subject, &object, *a))
                    };
                    match privilege {
                        "SELECT" | "REFERENCES" => any(&[Action::Read, Action::Admin]),
                        "INSERT" | "DELETE" | "TRUNCATE" => any(&[Action::Write, Action::Admin]),
                        "UPDATE" => any(&[Action::Update, Action::Write, Action::Admin]),
                        _ => false,
                    }
                },
            ))
        };
        let values = SessionValues {
            user: &p.name,
            database: engine.planner.database(),
            schema: &schema,
            backend_pid: pid,
            settings: settings.all(),
            pending_settings: pending_settings.clone(),
            check_setting: {
                // set_config is refused at once for what SET would refuse (unknown, read-only,
                // malformed), checked against this session's settings.
                let snapshot = settings.clone();
                Some(Arc::new(move |name: &str, value: &str| {
                    if name.eq_ignore_ascii_case("role")
                        || name.eq_ignore_ascii_case("session_authorization")
                    {
                        return Ok(());
                    }
                    snapshot.clone().set(name, value)
                }))
            },
            visible,
            hidden,
            privilege,
            overlays: Some(overlays.clone()),
            schema_names: {
                let catalog = catalog.clone();
                Some(Arc::new(move || catalog.schema_names()))
            },
            cancel_backend: {
                let backends = engine.backends.clone();
                let user = p.name.clone();
                let admin = engine.is_admin(&user);
                Some(Arc::new(move |pid: i32| {
                    cancel_backend(&backends, &user, admin, pid)
                }))
            },
        };
        let ctx = engine.planner.new_context(&values);
        ctx.register_udf(crate::policy::status_udf(
            engine.watch.status.clone(),
            p.admin,
        ));
        ctx
    }

    pub(super) fn rebuild_context(&mut self) {
        // Optimized under the old context's settings.
        if let Ok(mut plans) = self.optimized.lock() {
            plans.clear();
        }
        self.ctx = Self::build_context(
            &self.engine,
            &self.principal,
            &self.settings,
            self.backend_pid,
            &self.pending_settings,
            &self.overlays,
        );
    }

    /// Bring the overlays (what the block's own reads see of its writes) in line with its
    /// pending writes; after every statement.
    pub(super) fn sync_overlays(&self) {
        let now = super::transaction::overlays(&self.pending);
        let mut o = self.overlays.write().unwrap_or_else(|p| p.into_inner());
        if !(now.is_empty() && o.is_empty()) {
            *o = now;
        }
    }

    /// Whether the block holds rows or catalog changes its own reads see (then no result is
    /// cached or remembered, and no materialized view answers for a table).
    pub(super) fn has_overlays(&self) -> bool {
        self.draft.draft.is_changed()
            || !self
                .overlays
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }
}
