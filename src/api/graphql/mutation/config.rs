//! Bulk configuration and connection tests (permission `configure`): `importConfig`
//! takes a tenant section (TOML or JSON, the keys of the config file) and creates,
//! changes (and with REPLACE deletes) what it says, all or nothing;
//! `testDeviceConnection` tries a candidate device configuration without saving it.

use std::time::Duration;

use async_graphql::{Context, Json, Object};

use crate::api::graphql::configure::{self, Reading};
use crate::api::graphql::types::{
    ConfigFormat, ConnectionTest, DeviceTestInput, ImportMode, ImportReport, QualityLevel,
    TestReading,
};
use crate::api::graphql::{ApiError, fail, session};
use crate::api::permissions::FieldAccess;
use crate::domain::Quality;
use crate::manage::{self, Edit, FieldError, Format, Scope, probe};

#[derive(Default)]
pub struct ConfigMutations;

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl ConfigMutations {
    /// Applies a configuration document: the keys of the config file's tenant
    /// section (`units`, `devices` with their `tags` and `alarms`), as TOML or JSON
    /// (`format`, else JSON when it starts with `{`). Objects are matched by name.
    /// MERGE creates and updates what the document declares and keeps the rest;
    /// REPLACE also deletes what it does not declare. The whole document is checked
    /// first: one bad entry and nothing is applied, with every error and its path in
    /// `extensions.errors`. `dryRun` reports what would change without writing.
    /// Secrets given as `***` keep the stored ones (an export imports unchanged).
    async fn import_config(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<ConfigFormat>,
        #[graphql(default_with = "ImportMode::Merge")] mode: ImportMode,
        #[graphql(default = false)] dry_run: bool,
    ) -> async_graphql::Result<ImportReport> {
        let tenant_name = session(ctx)?.tenant_name.clone();
        let format = format.map_or_else(|| Format::detect(&document), Format::from);
        let doc = manage::parse(&document, format).map_err(|e| {
            configure::invalid(
                ctx,
                vec![FieldError {
                    path: e.path,
                    message: e.message,
                    quota: None,
                }],
            )
        })?;
        let outcome = configure::change(ctx, dry_run, |_, draft| {
            let (declared, problems) = doc.draft(&tenant_name);
            *draft = match mode {
                ImportMode::Merge => manage::merge(std::mem::take(draft), declared),
                ImportMode::Replace => declared,
            };
            Ok(Edit {
                scope: Scope::Document(&doc),
                problems,
            })
        })
        .await?;
        Ok(ImportReport::new(outcome.applied, outcome.changes))
    }

    /// Tries a device configuration without saving anything: reaches the endpoint,
    /// opens the protocol's session as a device would (with its credentials), reads
    /// the given tags once (or waits for them, for protocols that push) and closes.
    /// A device that cannot be reached or refuses is a report, not an error.
    async fn test_device_connection(
        &self,
        ctx: &Context<'_>,
        input: DeviceTestInput,
    ) -> async_graphql::Result<ConnectionTest> {
        let mut r = Reading::default();
        let driver = r.one(configure::driver(&input.driver, "input.driver"));
        let security = r.one(configure::security(
            input.security.as_ref(),
            "input.security",
        ));
        let tags: Vec<_> = input
            .tags
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let data_type = r.one(configure::data_type(
                    &t.data_type,
                    &format!("input.tags[{i}].dataType"),
                ))?;
                Some((t.name.clone(), t.address.clone(), data_type))
            })
            .collect();
        let timeout = Duration::from_millis(input.timeout_ms);
        if !(probe::MIN_TIMEOUT..=probe::MAX_TIMEOUT).contains(&timeout) {
            r.one::<()>(Err(FieldError {
                path: "input.timeoutMs".into(),
                message: "must be 100 to 30000".into(),
                quota: None,
            }));
        }
        if let Some(d) = &driver {
            if let Err(e) = d.check() {
                r.one::<()>(Err(FieldError {
                    path: "input.driver".into(),
                    message: e,
                    quota: None,
                }));
            }
            for (i, (_, address, data_type)) in tags.iter().enumerate() {
                if let Err(e) = d.check_tag(address, *data_type, false) {
                    r.one::<()>(Err(FieldError {
                        path: format!("input.tags[{i}].address"),
                        message: e,
                        quota: None,
                    }));
                }
            }
        }
        r.finish(ctx)?;
        let (Some(driver), Some(security)) = (driver, security) else {
            return Err(fail(
                ctx,
                ApiError::Internal("input read without errors is missing".into()),
            ));
        };
        let report = probe::run(probe::Probe {
            driver,
            security,
            poll_ms: input.poll_ms,
            tags,
            timeout,
        })
        .await;
        Ok(ConnectionTest {
            reachable: report.reachable,
            connected: report.connected,
            authenticated: report.authenticated,
            latency_ms: report.latency.map(|l| l.as_secs_f64() * 1000.0),
            readings: report
                .readings
                .into_iter()
                .map(|r| {
                    let (quality, reason) = match r.sample.as_ref().map(|s| s.quality) {
                        Some(Quality::Good) => (QualityLevel::Good, None),
                        Some(Quality::Uncertain(q)) => (QualityLevel::Uncertain, Some(q)),
                        Some(Quality::Bad(q)) => (QualityLevel::Bad, Some(q)),
                        None => (QualityLevel::Bad, None),
                    };
                    TestReading {
                        tag: r.tag,
                        value: r.sample.map(|s| Json(s.value.to_json())),
                        quality,
                        quality_reason: match (reason, quality) {
                            (Some(q), _) => Some(q.as_str().to_string()),
                            (None, QualityLevel::Bad) => Some("no_value".into()),
                            (None, _) => None,
                        },
                    }
                })
                .collect(),
            error: report.error,
        })
    }
}
