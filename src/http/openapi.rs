//! The OpenAPI 3.1 document, generated from the router's own list of routes, then finished so a
//! generated client works: every operation gets a unique `operationId` (`{tag}_{handler}`),
//! error answers are `application/problem+json`, and the errors every operation can answer
//! (malformed input, a missing token, a member's change, an oversized body, validation, a server
//! failure) are documented on each.

use std::sync::Arc;

use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, ResponseBuilder};

use super::error;

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard API", description = "Put conversational AI agents on phone numbers."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    // Query parameters name these without registering them.
    components(schemas(error::Problem, crate::domain::call::EndReason))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

const PROBLEM: &str = "application/problem+json";

/// A documented error answer with a problem body.
fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(ResponseBuilder::new().description(description).content(PROBLEM, Content::new(Some(Ref::from_schema_name("Problem")))).build())
}

/// Finishes the generated document (see the module header).
pub fn finish(mut doc: Document) -> Document {
    for (path, item) in doc.paths.paths.iter_mut() {
        let api = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                name(operation);
                problems_as_problem_json(operation);
                if api {
                    document_common_errors(operation, method, path.contains('{'));
                }
            }
        }
    }
    doc
}

/// `{tag}_{handler}`: handler names repeat across resources (`list`, `get`), tags do not.
fn name(operation: &mut Operation) {
    let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default().replace('-', "_");
    if let Some(id) = &operation.operation_id
        && !tag.is_empty()
        && !id.starts_with(&format!("{tag}_"))
    {
        operation.operation_id = Some(format!("{tag}_{id}"));
    }
}

fn problems_as_problem_json(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && status.starts_with(['4', '5'])
            && let Some(content) = response.content.shift_remove("application/json")
        {
            response.content.insert(PROBLEM.to_owned(), content);
        }
    }
}

fn document_common_errors(operation: &mut Operation, method: &str, names_a_resource: bool) {
    let changes = method != "get";
    let mut add = |status: &str, description: &str| {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| problem(description));
    };
    add("400", "Malformed request: bad JSON, an unknown field, a wrong type, or a bad path or query");
    add("401", "Missing, unknown or revoked API token");
    if changes {
        add("403", "The token's role (`member`) may read but not change");
    }
    if names_a_resource {
        add("404", "The resource does not exist in your organisation");
    }
    if operation.request_body.is_some() {
        add("413", "The body is larger than 1 MiB");
        add("422", "A field breaks a rule; `errors` names it");
    }
    add("429", "Too many requests from this API token or client address; wait `Retry-After` seconds");
    add("500", "The server failed; the cause is logged");
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()), responses((status = 200, description = "The OpenAPI document")))]
pub async fn openapi_json(axum::Extension(doc): axum::Extension<Arc<Document>>) -> impl IntoResponse {
    axum::Json(doc.as_ref().clone())
}
