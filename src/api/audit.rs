//! The audit trail of the API: exactly one record per mutation (written centrally by
//! [`AuditExtension`], whatever the outcome), one per denied query or subscription,
//! with who, tenant, action, resource, outcome, request id, client address, time and a
//! redacted summary of the input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextResolve, ResolveInfo,
};
use async_graphql::{Context, Name, Request, ServerResult, Value, Variables};

use super::auth::{AuthError, Session};
use super::graphql::{ApiContext, RequestCtx};
use super::permissions::rule_of;
use crate::domain::{AuditOutcome, AuditRecord, TenantId, Timestamp, UserId};
use crate::storage::Store;
use crate::telemetry::names;

/// Who acted, when there is no session (login) or the resolver knows better.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub tenant: Option<TenantId>,
    pub tenant_name: Option<String>,
    pub user: Option<UserId>,
    pub username: Option<String>,
}

/// What a resolver adds to its field's audit record.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub resource_id: Option<String>,
    pub actor: Option<Actor>,
    /// A short reason beyond the error code (`bad_password`, `lockout_started` …).
    pub reason: Option<String>,
    /// A configuration change's objects before and after (JSON, secrets as `***`).
    pub changes: Option<String>,
}

/// Notes of one request, by response key (alias or field name).
pub type Notes = Mutex<HashMap<String, AuditNote>>;

/// Adds to the audit record of the field being resolved.
pub fn note(ctx: &Context<'_>, f: impl FnOnce(&mut AuditNote)) {
    if let Some(r) = ctx.data_opt::<RequestCtx>() {
        let key = ctx.item.node.response_key().node.to_string();
        if let Ok(mut notes) = r.notes.lock() {
            f(notes.entry(key).or_default());
        }
    }
}

/// Appends a record; a store failure is logged and counted, never shown to the client.
pub async fn write(store: &dyn Store, record: AuditRecord) {
    match store.append_audit(&record).await {
        Ok(_) => {
            metrics::counter!(names::AUDIT_RECORDS, "outcome" => record.outcome.as_str())
                .increment(1);
        }
        Err(e) => {
            metrics::counter!(names::AUDIT_WRITE_FAILURES).increment(1);
            tracing::error!(error = %e, action = %record.action, outcome = record.outcome.as_str(),
                request_id = ?record.request_id, "audit record not written");
        }
    }
}

fn base(r: Option<&RequestCtx>, session: Option<&Session>, action: &str) -> AuditRecord {
    let resource = action
        .split_once('.')
        .and_then(|(p, f)| rule_of(p, f))
        .map_or("unknown", |rule| rule.resource);
    AuditRecord {
        id: 0,
        at: Timestamp::now(),
        tenant: session.map(|s| s.tenant),
        tenant_name: session.map(|s| s.tenant_name.clone()),
        user: session.map(|s| s.user),
        username: session.map(|s| s.username.clone()),
        action: action.to_string(),
        resource_type: resource.to_string(),
        resource_id: None,
        outcome: AuditOutcome::Denied,
        reason: None,
        request_id: r.map(|r| r.request_id.clone()),
        client_addr: r.and_then(|r| r.client_addr.clone()),
        summary: "{}".into(),
        changes: None,
    }
}

/// The record of an HTTP request outside GraphQL (`GET /api/export…`) by `session`:
/// outcome Success until the caller says otherwise.
pub fn http(
    session: &Session,
    action: &str,
    resource: &str,
    request_id: &str,
    client_addr: Option<&str>,
) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: Timestamp::now(),
        tenant: Some(session.tenant),
        tenant_name: Some(session.tenant_name.clone()),
        user: Some(session.user),
        username: Some(session.username.clone()),
        action: action.to_string(),
        resource_type: resource.to_string(),
        resource_id: None,
        outcome: AuditOutcome::Success,
        reason: None,
        request_id: Some(request_id.to_string()),
        client_addr: client_addr.map(str::to_string),
        summary: "{}".into(),
        changes: None,
    }
}

/// Records a denied query or subscription field.
pub async fn denied(ctx: &Context<'_>, session: Option<&Session>, action: &str, reason: &str) {
    let r = ctx.data_opt::<RequestCtx>();
    let mut record = base(r, session, action);
    record.reason = Some(reason.to_string());
    let api = ctx.data_unchecked::<Arc<ApiContext>>();
    write(api.store.as_ref(), record).await;
}

/// Whether a rejected token deserves a record: tampered, foreign or revoked tokens do;
/// a missing or merely expired one is routine (clients refresh) and is only counted.
pub fn is_suspicious(e: &AuthError) -> bool {
    matches!(e, AuthError::InvalidToken(_) | AuthError::Revoked)
}

/// Keys whose values never reach the audit log.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "token", "secret", "key", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// A whole document given as text (`importConfig`): it may hold secrets anywhere, so
/// its record keeps only its size and SHA-256, which identify the version imported.
fn digest(text: &str) -> serde_json::Value {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({ "bytes": text.len(), "sha256": hex })
}

/// The input with secret fields replaced by `"***"` (and documents by their digest),
/// as JSON, at most 2 KiB.
pub fn redacted_summary(args: &[(Name, Value)]) -> String {
    fn field(key: &str, v: &Value) -> (String, serde_json::Value) {
        let v = match v {
            _ if is_secret_key(key) => serde_json::Value::String("***".into()),
            Value::String(text) if key == "document" => digest(text),
            _ => redact(v),
        };
        (key.to_string(), v)
    }
    fn redact(v: &Value) -> serde_json::Value {
        match v {
            Value::Object(map) => {
                serde_json::Value::Object(map.iter().map(|(k, v)| field(k, v)).collect())
            }
            Value::List(items) => serde_json::Value::Array(items.iter().map(redact).collect()),
            other => other.clone().into_json().unwrap_or(serde_json::Value::Null),
        }
    }
    let map: serde_json::Map<String, serde_json::Value> =
        args.iter().map(|(k, v)| field(k, v)).collect();
    let mut text = serde_json::Value::Object(map).to_string();
    if text.len() > 2048 {
        let mut cut = 2048;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Writes one audit record per mutation field, after it ran.
pub struct AuditExtension;

impl ExtensionFactory for AuditExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuditRequest {
            variables: Mutex::new(Variables::default()),
        })
    }
}

struct AuditRequest {
    variables: Mutex<Variables>,
}

#[async_trait::async_trait]
impl Extension for AuditRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut v) = self.variables.lock() {
            *v = request.variables.clone();
        }
        next.run(ctx, request).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // The schema's mutation root type is `MutationRoot`.
        if info.parent_type != "MutationRoot" || info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        let action = format!("Mutation.{}", info.name);
        let key = info.alias.unwrap_or(info.name).to_string();
        let args: Vec<(Name, Value)> = {
            let vars = self.variables.lock().map(|v| v.clone()).unwrap_or_default();
            info.field
                .arguments
                .iter()
                .map(|(name, value)| {
                    let v = value
                        .node
                        .clone()
                        .into_const_with(|var| {
                            Ok::<_, std::convert::Infallible>(
                                vars.get(&var).cloned().unwrap_or(Value::Null),
                            )
                        })
                        .unwrap_or(Value::Null);
                    (name.node.clone(), v)
                })
                .collect()
        };
        let result = next.run(ctx, info).await;

        let r = ctx.data_opt::<RequestCtx>();
        let session = r.and_then(|r| r.session.as_ref().ok());
        let mut record = base(r, session, &action);
        record.summary = redacted_summary(&args);
        record.resource_id = args.iter().find_map(|(k, v)| match (k.as_str(), v) {
            ("id", Value::String(s)) => Some(s.clone()),
            _ => None,
        });
        let code = result.as_ref().err().and_then(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .and_then(|c| match c {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
        });
        (record.outcome, record.reason) = match (&result, code.as_deref()) {
            (Ok(_), _) => (AuditOutcome::Success, None),
            (
                Err(_),
                Some(c @ ("UNAUTHENTICATED" | "FORBIDDEN" | "RATE_LIMITED" | "QUOTA_EXCEEDED")),
            ) => (AuditOutcome::Denied, Some(c.to_string())),
            (Err(_), c) => (AuditOutcome::Failed, Some(c.unwrap_or("ERROR").to_string())),
        };
        if record.outcome == AuditOutcome::Denied && session.is_none() {
            if let Some(Err(e)) = r.map(|r| &r.session) {
                if is_suspicious(e) {
                    record.reason =
                        Some(format!("{}:{}", code.as_deref().unwrap_or(""), e.reason()));
                }
            }
        }
        let note = r.and_then(|r| r.notes.lock().ok().and_then(|mut n| n.remove(&key)));
        if let Some(note) = note {
            if note.resource_id.is_some() {
                record.resource_id = note.resource_id;
            }
            // The resolver knows who acted better than the request's token (a login,
            // a refresh or a logout act for the account they name).
            if let Some(a) = note.actor {
                record.tenant = a.tenant;
                record.tenant_name = a.tenant_name;
                record.user = a.user;
                record.username = a.username;
            }
            record.changes = note.changes;
            if let Some(reason) = note.reason {
                record.reason = Some(match record.reason {
                    Some(code) => format!("{code}:{reason}"),
                    None => reason,
                });
            }
        }
        if let Some(api) = ctx.data_opt::<Arc<ApiContext>>() {
            write(api.store.as_ref(), record).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let args = vec![
            (Name::new("username"), Value::String("ann".into())),
            (Name::new("password"), Value::String("hunter2".into())),
            (
                Name::new("input"),
                Value::Object(
                    [
                        (Name::new("refreshToken"), Value::String("abc".into())),
                        (Name::new("role"), Value::Enum(Name::new("ADMIN"))),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
        ];
        let s = redacted_summary(&args);
        assert!(!s.contains("hunter2") && !s.contains("abc"), "{s}");
        assert!(s.contains("ann") && s.contains("ADMIN"), "{s}");
    }

    #[test]
    fn documents_are_recorded_by_their_digest() {
        let doc = "[[devices]]\nname = \"gw\"\n[devices.security]\ncredentials = { username = \"u\", password = \"hunter2\" }\n";
        let args = vec![
            (Name::new("document"), Value::String(doc.into())),
            (Name::new("mode"), Value::Enum(Name::new("REPLACE"))),
        ];
        let s = redacted_summary(&args);
        assert!(!s.contains("hunter2") && !s.contains("gw"), "{s}");
        assert!(
            s.contains("sha256") && s.contains(&doc.len().to_string()),
            "{s}"
        );
        assert!(s.contains("REPLACE"), "{s}");
    }

    #[test]
    fn long_input_is_cut() {
        let args = vec![(Name::new("name"), Value::String("é".repeat(5000)))];
        assert!(redacted_summary(&args).len() <= 2048 + '…'.len_utf8());
    }
}
