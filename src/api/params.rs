//! `POST /params`: the parameters of a service, for generated forms (APEx-compatible:
//! `name, type, optional, description, default, options`, plus our `schema`).
//!
//! The service's platform describes it ([`crate::platform::Platform::service`]): an
//! openEO UDP at `service.application` (fetched once per URL; offline, the bundled APEx
//! catalogue snapshot answers for its file names), or an OGC API Processes process
//! description (`inputs`: `format: ogc-bbox` is a bounding box, `minOccurs: 0` optional,
//! `maxOccurs > 1` an array, `enum` options, schema defaults). A schema the daemon does
//! not understand is reported as type `json`, never as an error.
//!
//! The answer is the APEx list of parameters, so old clients keep working; with
//! `?view=service` it is an object that adds the service's title, description and
//! outputs (id, title, media types).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery};
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::job::validate::{parse_service_request, FieldError, ServiceRequestBody};
use crate::platform::udp::ParamDescriptor;
use crate::platform::OutputDescriptor;

/// Query of `POST /params`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ParamsQuery {
    /// `service`: answer `{title, description, parameters, outputs}` instead of the
    /// APEx list of parameters (`parameters`, the default).
    #[param(pattern = "^(service|parameters)?$")]
    view: Option<String>,
}

/// The whole description of a service (`POST /params?view=service`).
#[derive(Serialize, ToSchema)]
pub struct ServiceDescription {
    /// Title, when the service has one.
    pub title: Option<String>,
    /// Description, when the service has one.
    pub description: Option<String>,
    /// Parameters, as `POST /params` lists them.
    pub parameters: Vec<ParamDescriptor>,
    /// What the service gives back.
    pub outputs: Vec<OutputDescriptor>,
}

/// Describe the parameters of a service: one entry per parameter (openEO UDP
/// parameter, OGC process input), in the definition's order. With `?view=service`, an
/// object with the title, description, parameters and outputs.
#[utoipa::path(post, path = "/params", tag = "services",
    request_body = ServiceRequestBody, params(ParamsQuery),
    responses(
        (status = 200, description = "The service's parameters (or, with view=service, its description)", body = Vec<ParamDescriptor>),
        (status = 409, description = "The backend wants a login before it describes the service", body = ProblemBody, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON, or a query parameter given twice", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or view, or `service.application` names no service", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The service definition could not be fetched", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn params(
    State(d): State<App>,
    ApiQuery(q): ApiQuery<ParamsQuery>,
    ApiJson(body): ApiJson,
) -> Result<Response, Problem> {
    let full = match q.view.as_deref() {
        None | Some("") | Some("parameters") => false,
        Some("service") => true,
        Some(other) => {
            return Err(Problem::invalid(vec![FieldError::new(
                "view",
                format!("unknown view {other:?}; use service or parameters"),
            )]))
        }
    };
    let (label, service) = parse_service_request(&body).map_err(Problem::invalid)?;
    let def = d.service(label, &service).await?;
    if full {
        return Ok(Json(ServiceDescription {
            title: def.title.clone(),
            description: def.description.clone(),
            parameters: def.parameters.clone(),
            outputs: def.outputs.clone(),
        })
        .into_response());
    }
    Ok(Json(def.parameters.clone()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::validate::FieldError;
    use crate::job::{Label, ServiceDetails};
    use serde_json::json;

    fn names(r: Result<(Label, ServiceDetails), Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn parses_and_rejects_requests() {
        let ok = json!({"label": "openeo", "service": {
            "endpoint": "https://openeofed.dataspace.copernicus.eu",
            "application": "https://example.org/udp.json"}});
        let (label, service) = parse_service_request(&ok).unwrap();
        assert_eq!(label, Label::Openeo);
        assert_eq!(service.namespace, None);
        assert_eq!(names(parse_service_request(&json!([]))), ["body"]);
        assert_eq!(
            names(parse_service_request(&json!({}))),
            ["label", "service"]
        );
        assert_eq!(
            names(parse_service_request(
                &json!({"label": "wps", "service": 1, "extra": true})
            )),
            ["label", "service", "extra"]
        );
        assert_eq!(
            names(parse_service_request(
                &json!({"label": "openeo", "service": {
                "endpoint": "ftp://x", "application": "udp.json", "namespace": 3, "colour": "red"}})
            )),
            [
                "service.endpoint",
                "service.application",
                "service.namespace",
                "service.colour"
            ]
        );
        // An OGC application is a process id, not a URL.
        let ogc = json!({"label": "ogc_api_process", "service": {
            "endpoint": "https://ades.example/ogc", "application": "s1-coherence"}});
        assert_eq!(parse_service_request(&ogc).unwrap().0, Label::OgcApiProcess);
    }
}
