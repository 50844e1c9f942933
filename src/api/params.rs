//! `POST /params`: the parameters of a service, for generated forms (APEx-compatible:
//! `name, type, optional, description, default, options`, plus our `schema`).
//!
//! openEO services: the UDP at `service.application` is fetched through the daemon's
//! [`crate::platform::udp::UdpCache`] (once per URL; offline, the bundled APEx
//! catalogue snapshot answers for its file names) and described by
//! [`crate::platform::udp::describe`]. A schema the daemon does not understand is
//! reported as type `json`, never as an error. OGC API Processes services are not
//! supported yet (501).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::daemon::Daemon;
use crate::job::validate::parse_service_request;
use crate::job::{Label, ServiceDetails};
use crate::platform::udp::{describe, ParamDescriptor, UdpError};

/// Body of `POST /params` (APEx `ParamRequest`); no other field is accepted.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ParamsRequestBody {
    /// Platform kind.
    label: Label,
    /// Backend (`endpoint`) and application (openEO: the public URL of the UDP JSON).
    service: ServiceDetails,
}

/// Describe the parameters of a service: one entry per parameter of the openEO UDP at
/// `service.application`, in the UDP's order.
#[utoipa::path(post, path = "/params", tag = "services",
    request_body = ParamsRequestBody,
    responses(
        (status = 200, description = "The service's parameters", body = Vec<ParamDescriptor>),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or `service.application` is not a UDP", body = ProblemBody, content_type = "application/problem+json"),
        (status = 501, description = "OGC API Processes services are not supported yet", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The UDP could not be fetched", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn params(
    State(d): State<Daemon>,
    ApiJson(body): ApiJson,
) -> Result<Json<Vec<ParamDescriptor>>, Problem> {
    let (label, service) = parse_service_request(&body).map_err(Problem::invalid)?;
    match label {
        Label::OgcApiProcess => Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "Not implemented",
            "OGC API Processes services are not supported yet",
        )),
        Label::Openeo => {
            let udp = d
                .udps()
                .get(&service.application)
                .await
                .map_err(udp_problem)?;
            Ok(Json(describe(&udp)))
        }
    }
}

/// Maps a UDP error to the answer: no answer or a server error is 502
/// `UdpUnavailable`; a client error status, a document that is not a UDP or an
/// unusable URL is a 422 naming `service.application`.
pub(crate) fn udp_problem(e: UdpError) -> Problem {
    match &e {
        UdpError::Unreachable { .. } => unavailable(&e),
        UdpError::Http { status, .. } if *status >= 500 => unavailable(&e),
        _ => Problem::invalid_field("service.application", e.to_string()),
    }
}

fn unavailable(e: &UdpError) -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "UdpUnavailable",
        "The service definition could not be fetched",
        e.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::validate::FieldError;
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
