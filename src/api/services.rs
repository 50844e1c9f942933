//! `GET /services`, `GET /services/{id}` and `GET /catalogue` (*ext*): the services of
//! the configured catalogues, for pickers (the QGIS plugin's service list, the
//! Processing toolbox) and forms ([`crate::catalogue`] reads and refreshes them).
//!
//! Each service is a [`ServiceRecord`]: `label`, `endpoint`, `namespace` and
//! `application` are what a job for it sends as `label` and `service`; `title`,
//! `description`, `keywords`, `platform`, `formats`, `license`, `cost_estimate`,
//! `cost_unit`, `thumbnail` describe it; `source` says which catalogue it came from
//! (`bundled`: the snapshot compiled into the daemon, served while a source has not
//! been read or cannot be).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;

use super::extract::Segments;
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::catalogue::{CatalogueStatus, Query, ServiceDetails, ServiceRecord};
use crate::job::validate::FieldError;
use crate::job::Label;

/// Reads the query of `GET /services`; unknown or repeated parameters and an unknown
/// `kind` are named.
fn parse_query(raw: Option<&str>) -> Result<Query, Problem> {
    let mut q = Query::default();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(k.to_string()) {
            errors.push(FieldError::new(
                k.as_ref(),
                "is given more than once; give each query parameter once",
            ));
            continue;
        }
        let v = v.into_owned();
        match k.as_ref() {
            "q" => q.q = Some(v),
            "keyword" => q.keyword = Some(v),
            "platform" => q.platform = Some(v),
            "kind" => match Label::ALL.into_iter().find(|l| l.as_str() == v) {
                Some(kind) => q.kind = Some(kind),
                None => errors.push(FieldError::new(
                    "kind",
                    format!("unknown kind {v:?}; use openeo or ogc_api_process"),
                )),
            },
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(Problem::invalid(errors))
    }
}

/// Known services, sorted by title: the configured catalogues' records (the bundled
/// APEx snapshot while a source has not been read or cannot be). Filters: `q` (words
/// all found in title, description or keywords, case-insensitive), `keyword` (one
/// keyword, case-insensitive), `platform` (part of the platform's id, title or URL, or
/// of the endpoint), `kind` (`openeo` or `ogc_api_process`).
#[utoipa::path(get, path = "/services", tag = "services",
    params(
        ("q" = Option<String>, Query, description = "Words that must all appear in the title, description or keywords"),
        ("keyword" = Option<String>, Query, description = "A keyword the service has (case-insensitive)"),
        ("platform" = Option<String>, Query, description = "Part of the platform's id, title or URL, or of the endpoint"),
        ("kind" = Option<Label>, Query, description = "openeo or ogc_api_process"),
    ),
    responses(
        (status = 200, description = "Known services", body = Vec<ServiceRecord>),
        (status = 422, description = "Unknown query parameter or kind", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn services(
    State(d): State<App>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<ServiceRecord>>, Problem> {
    let q = parse_query(query.as_deref())?;
    Ok(Json(d.catalogue().list(&q)))
}

/// One service with everything its catalogue record says: every link (example
/// output, thumbnail, web app, notebook, code, licence, citation, ...), contacts, and
/// default parameter values from its benchmark scenario (`{}` without one).
#[utoipa::path(get, path = "/services/{id}", tag = "services",
    params(("id" = String, Path, description = "The service's record id")),
    responses(
        (status = 200, description = "The service", body = ServiceDetails),
        (status = 404, description = "No service with this id", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn service(
    State(d): State<App>,
    Segments(id): Segments<String>,
) -> Result<Json<ServiceDetails>, Problem> {
    d.catalogue().get(&id).map(Json).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "ServiceNotFound",
            "No such service",
            format!("the catalogue has no service {id:?}; GET /services lists them"),
        )
    })
}

/// The catalogue's sources and how they stand: `ok` (read at the last refresh),
/// `cached` (its last good copy is served), `offline` (unreadable and no copy: the
/// bundled snapshot stands in), `bundled`; records given and skipped, when last read,
/// the last error.
#[utoipa::path(get, path = "/catalogue", tag = "services",
    responses(
        (status = 200, description = "The catalogue's sources", body = CatalogueStatus),
        (status = 422, description = "Unknown query parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn catalogue(
    State(d): State<App>,
    RawQuery(query): RawQuery,
) -> Result<Json<CatalogueStatus>, Problem> {
    let errors: Vec<FieldError> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, _)| FieldError::new(k.as_ref(), "unknown query parameter"))
            .collect();
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    Ok(Json(d.catalogue().status()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_and_checked() {
        let q = parse_query(Some(
            "q=ndvi+map&keyword=Sentinel-2&platform=cdse&kind=openeo",
        ))
        .unwrap();
        assert_eq!(q.q.as_deref(), Some("ndvi map"));
        assert_eq!(q.keyword.as_deref(), Some("Sentinel-2"));
        assert_eq!(q.platform.as_deref(), Some("cdse"));
        assert_eq!(q.kind, Some(Label::Openeo));
        assert_eq!(parse_query(None).unwrap(), Query::default());
        let e = parse_query(Some("kind=wps")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors[0].name, "kind");
        let e = parse_query(Some("limit=3")).unwrap_err();
        assert_eq!(e.errors[0].name, "limit");
        let e = parse_query(Some("q=a&q=b")).unwrap_err();
        assert_eq!(e.errors[0].name, "q");
    }
}
