//! Who may do what: the named permissions, the exact role → permission map, and the
//! one table that gives every root field of the API its access rule.
//!
//! Enforcement is central and deny-by-default: the three root types carry the object
//! guard [`FieldAccess`], which looks the field up in [`FIELDS`]; a field missing from
//! the table is refused for everyone (and a test walks the schema to make sure none
//! is missing).

use async_graphql::{Context, Guard};

use super::audit;
use super::auth::Session;
use super::error::ApiError;
use super::graphql::{fail, session_for_guard};
use crate::domain::Role;

/// The tenant whose administrators are platform administrators (may manage tenants).
pub const SYSTEM_TENANT: &str = "system";

/// A named right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Units, devices, tags, latest values, history, live values, own tenant's usage.
    Read,
    /// Writing tags: commands to devices.
    Control,
    AcknowledgeAlarms,
    /// Units, devices, tags and rules.
    Configure,
    ManageUsers,
    ReadAudit,
    /// Server figures: actors, restarts, cache, historian.
    ReadSystem,
    /// Create, disable and delete tenants, set quotas (platform administrators).
    ManageTenants,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::Read,
        Permission::Control,
        Permission::AcknowledgeAlarms,
        Permission::Configure,
        Permission::ManageUsers,
        Permission::ReadAudit,
        Permission::ReadSystem,
        Permission::ManageTenants,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Control => "control",
            Permission::AcknowledgeAlarms => "acknowledge_alarms",
            Permission::Configure => "configure",
            Permission::ManageUsers => "manage_users",
            Permission::ReadAudit => "read_audit",
            Permission::ReadSystem => "read_system",
            Permission::ManageTenants => "manage_tenants",
        }
    }
}

const VIEWER: &[Permission] = &[Permission::Read];
const OPERATOR: &[Permission] = &[
    Permission::Read,
    Permission::Control,
    Permission::AcknowledgeAlarms,
];
const ADMIN: &[Permission] = &[
    Permission::Read,
    Permission::Control,
    Permission::AcknowledgeAlarms,
    Permission::Configure,
    Permission::ManageUsers,
    Permission::ReadAudit,
    Permission::ReadSystem,
];
const PLATFORM_ADMIN: &[Permission] = &[
    Permission::Read,
    Permission::Control,
    Permission::AcknowledgeAlarms,
    Permission::Configure,
    Permission::ManageUsers,
    Permission::ReadAudit,
    Permission::ReadSystem,
    Permission::ManageTenants,
];

/// The exact permissions of a role. `platform` is true for users of the
/// [`SYSTEM_TENANT`]: only its administrators may manage tenants.
pub fn permissions(role: Role, platform: bool) -> &'static [Permission] {
    match (role, platform) {
        (Role::Viewer, _) => VIEWER,
        (Role::Operator, _) => OPERATOR,
        (Role::Admin, false) => ADMIN,
        (Role::Admin, true) => PLATFORM_ADMIN,
    }
}

impl Session {
    /// Whether this session's tenant is the platform tenant.
    pub fn is_platform(&self) -> bool {
        self.tenant_name == SYSTEM_TENANT
    }

    pub fn permits(&self, p: Permission) -> bool {
        permissions(self.role, self.is_platform()).contains(&p)
    }
}

/// What a root field requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, refresh, logout: they carry their own credential).
    Public,
    /// Any valid session, whatever its role (the caller's own account).
    Authenticated,
    Requires(Permission),
}

/// The access rule of one root field, and the kind of resource it acts on (for audit).
#[derive(Debug, Clone, Copy)]
pub struct FieldRule {
    /// `Query.devices`, `Mutation.login`, `Subscription.tagValues`.
    pub field: &'static str,
    pub access: Access,
    pub resource: &'static str,
}

const fn rule(field: &'static str, access: Access, resource: &'static str) -> FieldRule {
    FieldRule {
        field,
        access,
        resource,
    }
}

use Access::{Authenticated, Public, Requires};
use Permission::*;

/// Every root field of the schema with its rule. Deny by default: a field that is not
/// here cannot be called.
pub const FIELDS: &[FieldRule] = &[
    rule("Query.me", Authenticated, "user"),
    rule("Query.units", Requires(Read), "unit"),
    rule("Query.devices", Requires(Read), "device"),
    rule("Query.device", Requires(Read), "device"),
    rule("Query.tags", Requires(Read), "tag"),
    rule("Query.latest", Requires(Read), "tag"),
    rule("Query.history", Requires(Read), "tag"),
    rule("Query.tenantUsage", Requires(Read), "tenant"),
    rule("Query.system", Requires(ReadSystem), "system"),
    rule("Query.users", Requires(ManageUsers), "user"),
    rule("Query.auditLog", Requires(ReadAudit), "audit_log"),
    rule("Query.tenants", Requires(ManageTenants), "tenant"),
    rule("Query.browseOpcUa", Requires(Configure), "device"),
    rule("Query.alarms", Requires(Read), "alarm"),
    rule("Query.alarmHistory", Requires(Read), "alarm"),
    rule("Query.anomalies", Requires(Read), "tag"),
    rule("Query.statistics", Requires(Read), "tag"),
    rule("Query.correlation", Requires(Read), "tag"),
    rule("Query.alarmAnalytics", Requires(Read), "alarm"),
    rule("Query.unitKpis", Requires(Read), "unit"),
    rule("Query.deviceCount", Requires(Read), "device"),
    rule("Query.exportConfig", Requires(Configure), "config"),
    rule("Mutation.login", Public, "session"),
    rule("Mutation.refresh", Public, "session"),
    rule("Mutation.logout", Public, "session"),
    rule("Mutation.changePassword", Authenticated, "user"),
    rule("Mutation.createUser", Requires(ManageUsers), "user"),
    rule("Mutation.updateUser", Requires(ManageUsers), "user"),
    rule("Mutation.resetPassword", Requires(ManageUsers), "user"),
    rule("Mutation.deleteUser", Requires(ManageUsers), "user"),
    rule("Mutation.createTenant", Requires(ManageTenants), "tenant"),
    rule(
        "Mutation.setTenantDisabled",
        Requires(ManageTenants),
        "tenant",
    ),
    rule(
        "Mutation.setTenantQuotas",
        Requires(ManageTenants),
        "tenant",
    ),
    rule("Mutation.deleteTenant", Requires(ManageTenants), "tenant"),
    rule("Mutation.writeTag", Requires(Control), "tag"),
    rule("Mutation.importOpcUaTags", Requires(Configure), "device"),
    rule("Mutation.createUnit", Requires(Configure), "unit"),
    rule("Mutation.updateUnit", Requires(Configure), "unit"),
    rule("Mutation.deleteUnit", Requires(Configure), "unit"),
    rule("Mutation.createDevice", Requires(Configure), "device"),
    rule("Mutation.updateDevice", Requires(Configure), "device"),
    rule("Mutation.deleteDevice", Requires(Configure), "device"),
    rule("Mutation.setDeviceEnabled", Requires(Configure), "device"),
    rule("Mutation.createTag", Requires(Configure), "tag"),
    rule("Mutation.updateTag", Requires(Configure), "tag"),
    rule("Mutation.deleteTag", Requires(Configure), "tag"),
    rule("Mutation.importConfig", Requires(Configure), "config"),
    rule(
        "Mutation.testDeviceConnection",
        Requires(Configure),
        "device",
    ),
    rule(
        "Mutation.acknowledgeAlarm",
        Requires(AcknowledgeAlarms),
        "alarm",
    ),
    rule(
        "Mutation.acknowledgeAlarms",
        Requires(AcknowledgeAlarms),
        "alarm",
    ),
    rule("Mutation.shelveAlarm", Requires(AcknowledgeAlarms), "alarm"),
    rule(
        "Mutation.unshelveAlarm",
        Requires(AcknowledgeAlarms),
        "alarm",
    ),
    rule("Subscription.tagValues", Requires(Read), "tag"),
    rule("Subscription.deviceStatus", Requires(Read), "device"),
    rule("Subscription.alarmEvents", Requires(Read), "alarm"),
];

/// The rule of `parent.field`, if the table has one.
pub fn rule_of(parent: &str, field: &str) -> Option<&'static FieldRule> {
    FIELDS.iter().find(|r| {
        r.field
            .split_once('.')
            .is_some_and(|(p, f)| p == parent && f == field)
    })
}

/// The object guard of the root types: applies [`FIELDS`] to the field being resolved.
pub struct FieldAccess(pub &'static str);

impl Guard for FieldAccess {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let field = ctx.item.node.name.node.as_str();
        let Some(rule) = rule_of(self.0, field) else {
            tracing::error!(parent = self.0, field, "field has no access rule: refused");
            return Err(self.deny(ctx, None, field, "no_rule").await);
        };
        let session = match rule.access {
            Public => return Ok(()),
            Authenticated | Requires(_) => session_for_guard(ctx, self.0, field).await?,
        };
        match rule.access {
            Requires(p) if !session.permits(p) => {
                Err(self.deny(ctx, Some(session), field, p.as_str()).await)
            }
            _ => Ok(()),
        }
    }
}

impl FieldAccess {
    /// FORBIDDEN, audited here for queries and subscriptions (a mutation's one record
    /// is written by the audit extension, with this outcome).
    async fn deny(
        &self,
        ctx: &Context<'_>,
        session: Option<&Session>,
        field: &str,
        missing: &str,
    ) -> async_graphql::Error {
        if self.0 != "Mutation" {
            audit::denied(
                ctx,
                session,
                &format!("{}.{field}", self.0),
                &format!("missing_permission:{missing}"),
            )
            .await;
        }
        fail(ctx, ApiError::Forbidden)
    }
}

/// The permission table as Markdown, as the README's "Security" section shows it
/// (a test keeps the two equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| permission | viewer | operator | admin | platform admin |\n");
    out.push_str("|---|---|---|---|---|\n");
    for p in Permission::ALL {
        let mark = |role, platform| {
            if permissions(role, platform).contains(&p) {
                "yes"
            } else {
                "-"
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            p.as_str(),
            mark(Role::Viewer, false),
            mark(Role::Operator, false),
            mark(Role::Admin, false),
            mark(Role::Admin, true),
        ));
    }
    out.push_str("\n| field | requires |\n|---|---|\n");
    for r in FIELDS {
        let needs = match r.access {
            Public => "anyone".to_string(),
            Authenticated => "any signed-in user".to_string(),
            Requires(p) => format!("`{}`", p.as_str()),
        };
        out.push_str(&format!("| `{}` | {} |\n", r.field, needs));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_exactly_its_permissions() {
        assert_eq!(permissions(Role::Viewer, false), &[Read]);
        assert_eq!(permissions(Role::Viewer, true), &[Read]);
        assert_eq!(
            permissions(Role::Operator, false),
            &[Read, Control, AcknowledgeAlarms]
        );
        assert_eq!(
            permissions(Role::Operator, true),
            &[Read, Control, AcknowledgeAlarms]
        );
        assert_eq!(
            permissions(Role::Admin, false),
            &[
                Read,
                Control,
                AcknowledgeAlarms,
                Configure,
                ManageUsers,
                ReadAudit,
                ReadSystem
            ]
        );
        assert_eq!(
            permissions(Role::Admin, true),
            &[
                Read,
                Control,
                AcknowledgeAlarms,
                Configure,
                ManageUsers,
                ReadAudit,
                ReadSystem,
                ManageTenants
            ]
        );
    }

    #[test]
    fn only_platform_admins_manage_tenants() {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert!(!permissions(role, false).contains(&ManageTenants));
        }
        assert!(permissions(Role::Admin, true).contains(&ManageTenants));
    }

    #[test]
    fn the_readme_shows_this_permission_table() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's permission table is out of date; it must read:\n{table}"
        );
    }

    #[test]
    fn the_field_table_has_no_duplicates() {
        let mut seen = std::collections::HashSet::new();
        for r in FIELDS {
            assert!(seen.insert(r.field), "{} twice", r.field);
            assert!(r.field.split_once('.').is_some(), "{}", r.field);
        }
    }
}
