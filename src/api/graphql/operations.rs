//! Counts GraphQL operations by type (`thermacore_graphql_operations_total`): once per
//! request, by the type of the operation it runs once its document is parsed; a
//! document that does not parse counts as `invalid`. Errors are counted apart, by code
//! (`thermacore_graphql_errors_total`).

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Name, Request, ServerResult, Variables};

use crate::telemetry::names;

/// The `type` label values.
pub const OPERATION_TYPES: [&str; 5] = ["query", "mutation", "subscription", "unknown", "invalid"];

pub struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationCounter::default())
    }
}

#[derive(Default)]
struct OperationCounter {
    /// The request's `operationName`, which picks one of several operations.
    name: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Extension for OperationCounter {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut name) = self.name.lock() {
            name.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await;
        let kind = match &doc {
            Ok(doc) => {
                let ty = match &doc.operations {
                    DocumentOperations::Single(op) => Some(op.node.ty),
                    DocumentOperations::Multiple(ops) => {
                        let name = self.name.lock().ok().and_then(|n| n.clone());
                        name.and_then(|n| ops.get(&Name::new(n)).map(|op| op.node.ty))
                    }
                };
                match ty {
                    Some(OperationType::Query) => "query",
                    Some(OperationType::Mutation) => "mutation",
                    Some(OperationType::Subscription) => "subscription",
                    None => "unknown",
                }
            }
            Err(_) => "invalid",
        };
        metrics::counter!(names::GRAPHQL_OPERATIONS, "type" => kind).increment(1);
        doc
    }
}
