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
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::daemon::Daemon;
use crate::job::validate::{check_http_url, FieldError};
use crate::job::{Label, ServiceDetails};
use crate::platform::udp::{describe, ParamDescriptor, UdpError};

/// Top-level fields of a `POST /params` body.
const FIELDS: [&str; 2] = ["label", "service"];
/// Fields of `service`.
const SERVICE_FIELDS: [&str; 3] = ["endpoint", "application", "namespace"];

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
    let (label, service) = parse_request(&body).map_err(Problem::invalid)?;
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

/// Parses `{label, service: {endpoint, application, namespace?}}`, collecting every
/// mistake.
fn parse_request(body: &Value) -> Result<(Label, ServiceDetails), Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let label = match obj.get("label") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "label",
                "is required: openeo or ogc_api_process",
            ));
            None
        }
        Some(Value::String(s)) => Label::parse(s).or_else(|| {
            errors.push(FieldError::new(
                "label",
                format!("unknown label {s:?}; valid values: openeo, ogc_api_process"),
            ));
            None
        }),
        Some(other) => {
            errors.push(FieldError::new(
                "label",
                format!("must be a string, not {}", kind(other)),
            ));
            None
        }
    };
    let service = parse_service(obj.get("service"), label, &mut errors);
    reject_unknown("", obj, &FIELDS, &mut errors);
    match (label, service) {
        (Some(label), Some(service)) if errors.is_empty() => Ok((label, service)),
        _ => Err(errors),
    }
}

fn parse_service(
    v: Option<&Value>,
    label: Option<Label>,
    errors: &mut Vec<FieldError>,
) -> Option<ServiceDetails> {
    let m = match v {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "service",
                "is required: {endpoint, application, namespace?}",
            ));
            return None;
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(FieldError::new(
                "service",
                format!(
                    "must be an object {{endpoint, application, namespace?}}, not {}",
                    kind(other)
                ),
            ));
            return None;
        }
    };
    let endpoint = string_field(m, "endpoint", errors).and_then(|e| match check_http_url(&e) {
        Ok(()) => Some(e),
        Err(reason) => {
            errors.push(FieldError::new("service.endpoint", reason));
            None
        }
    });
    let application = string_field(m, "application", errors).and_then(|a| {
        if a.trim().is_empty() {
            errors.push(FieldError::new("service.application", "must not be empty"));
            return None;
        }
        if label == Some(Label::Openeo) {
            if let Err(reason) = check_http_url(&a) {
                errors.push(FieldError::new(
                    "service.application",
                    format!("{reason}: the public URL of the openEO UDP JSON"),
                ));
                return None;
            }
        }
        Some(a)
    });
    let namespace = match m.get("namespace") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(other) => {
            errors.push(FieldError::new(
                "service.namespace",
                format!("must be a string or null, not {}", kind(other)),
            ));
            None
        }
    };
    reject_unknown("service", m, &SERVICE_FIELDS, errors);
    Some(ServiceDetails {
        endpoint: endpoint?,
        namespace: namespace?,
        application: application?,
    })
}

/// A required string field of `service`.
fn string_field(m: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let name = format!("service.{key}");
    match m.get(key) {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(FieldError::new(
                name,
                format!("must be a string, not {}", kind(other)),
            ));
            None
        }
    }
}

fn reject_unknown(
    prefix: &str,
    m: &Map<String, Value>,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        errors.push(FieldError::new(
            name,
            format!("unknown field; expected one of: {}", allowed.join(", ")),
        ));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(r: Result<(Label, ServiceDetails), Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn parses_and_rejects_requests() {
        let ok = json!({"label": "openeo", "service": {
            "endpoint": "https://openeofed.dataspace.copernicus.eu",
            "application": "https://example.org/udp.json"}});
        let (label, service) = parse_request(&ok).unwrap();
        assert_eq!(label, Label::Openeo);
        assert_eq!(service.namespace, None);
        assert_eq!(names(parse_request(&json!([]))), ["body"]);
        assert_eq!(names(parse_request(&json!({}))), ["label", "service"]);
        assert_eq!(
            names(parse_request(
                &json!({"label": "wps", "service": 1, "extra": true})
            )),
            ["label", "service", "extra"]
        );
        assert_eq!(
            names(parse_request(&json!({"label": "openeo", "service": {
                "endpoint": "ftp://x", "application": "udp.json", "namespace": 3, "colour": "red"}}))),
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
        assert_eq!(parse_request(&ogc).unwrap().0, Label::OgcApiProcess);
    }
}
