//! Backends and their logins (*ext*): `GET /backends`, `POST /auth/login`,
//! `GET /auth/logins/{login_id}`, `GET /auth/callback` (the browser's redirect back from
//! the identity provider; no API token) and `POST /auth/logout`.
//!
//! Bodies are validated here, all errors at once; the work is [`crate::auth::Auth`]'s.
//! No answer ever carries a token, a client secret or a device code.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::app::{App, BackendEntry};
use crate::auth::backend_tokens::SecretString;
use crate::auth::session::Method;
use crate::auth::{LoginRequest, LoginStarted, LoginStatus};
use crate::job::validate::{check_http_url, http_url_schema, not_blank_schema, typed, FieldError};

/// Body of `POST /auth/login`: an interactive login (device code or browser), or a
/// service account's client credentials. No other field is accepted.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LoginBody {
    /// `device` (the default) or `browser`.
    Interactive(InteractiveLogin),
    /// `client_credentials`: `client_id` and `client_secret` are required.
    ClientCredentials(ClientCredentialsLogin),
}

/// A device-code or browser login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveLogin {
    /// Backend URL, e.g. `https://openeofed.dataspace.copernicus.eu`.
    #[schema(schema_with = http_url_schema)]
    pub endpoint: String,
    /// `device` (default) or `browser`.
    #[serde(default)]
    pub method: Option<InteractiveMethod>,
    /// A provider other than the backend's first (default).
    #[serde(default)]
    #[schema(schema_with = optional_not_blank)]
    pub provider_id: Option<String>,
    /// A client other than the provider's default one.
    #[serde(default)]
    #[schema(schema_with = optional_not_blank)]
    pub client_id: Option<String>,
}

/// How an interactive login is made.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InteractiveMethod {
    /// The user types a code on a page of the identity provider.
    Device,
    /// The user logs in in a browser, which comes back to `/auth/callback`.
    Browser,
}

/// A service account's login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsLogin {
    /// Backend URL.
    #[schema(schema_with = http_url_schema)]
    pub endpoint: String,
    /// `client_credentials`.
    pub method: ClientCredentialsMethod,
    /// A provider other than the backend's first (default).
    #[serde(default)]
    #[schema(schema_with = optional_not_blank)]
    pub provider_id: Option<String>,
    /// The service account's client.
    #[schema(schema_with = not_blank_schema)]
    pub client_id: String,
    /// Its secret; kept in the OS keyring, never returned.
    #[schema(min_length = 1)]
    pub client_secret: String,
}

/// The one method of [`ClientCredentialsLogin`].
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientCredentialsMethod {
    /// The OAuth client credentials grant.
    ClientCredentials,
}

/// Body of `POST /auth/logout`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutBody {
    /// Backend URL.
    #[schema(schema_with = http_url_schema)]
    pub endpoint: String,
}

/// An optional string that is not blank when given.
fn optional_not_blank() -> utoipa::openapi::Object {
    let mut schema = not_blank_schema();
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    schema
}

/// Backends the daemon knows (configured, used by a job, or known out of the box) with
/// their capabilities, providers, login state and token store. Never shows a token.
#[utoipa::path(get, path = "/backends", tag = "backends",
    responses((status = 200, description = "Backends", body = Vec<BackendEntry>)))]
pub async fn backends(State(d): State<App>) -> Json<Vec<BackendEntry>> {
    Json(d.backends().await)
}

/// Start a login to a backend. `device`: answers the code to show and the page to open,
/// then the daemon polls the identity provider; `browser`: answers the page to open, which
/// redirects back to `/auth/callback`; `client_credentials`: logs in before answering.
/// An `auth` event on `/events` says when a login ends.
#[utoipa::path(post, path = "/auth/login", tag = "backends",
    request_body = LoginBody,
    responses(
        (status = 202, description = "Device or browser login started", body = LoginStarted),
        (status = 200, description = "Logged in (client credentials)", body = LoginStarted),
        (status = 422, description = "Invalid fields, or the provider refused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The backend or identity provider failed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Unreachable, or no usable keyring", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn login(State(d): State<App>, ApiJson(body): ApiJson) -> Result<Response, Problem> {
    let req = parse_login(&body)?;
    let started = d.login(req).await?;
    let status = if started.state == "logged_in" {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(started)).into_response())
}

fn parse_login(body: &Value) -> Result<LoginRequest, Problem> {
    let Some(obj) = body.as_object() else {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    };
    let mut errors = Vec::new();
    const KNOWN: [&str; 5] = [
        "endpoint",
        "method",
        "provider_id",
        "client_id",
        "client_secret",
    ];
    for k in obj.keys() {
        if !KNOWN.contains(&k.as_str()) {
            errors.push(FieldError::new(k.clone(), "unknown field"));
        }
    }
    let text = |k: &str, errors: &mut Vec<FieldError>| -> Option<String> {
        match obj.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => {
                errors.push(FieldError::new(k, "must be a non-empty string"));
                None
            }
        }
    };
    let endpoint = text("endpoint", &mut errors);
    match &endpoint {
        None if !errors.iter().any(|e| e.name == "endpoint") => {
            errors.push(FieldError::new("endpoint", "required: the backend URL"))
        }
        Some(e) => {
            if let Err(reason) = check_http_url(e) {
                errors.push(FieldError::new("endpoint", reason));
            }
        }
        None => {}
    }
    let method = match text("method", &mut errors).as_deref() {
        None => Some(Method::Device),
        Some(m) => {
            let parsed = Method::parse(m);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "method",
                    format!("{m:?} is not one of device, browser, client_credentials"),
                ));
            }
            parsed
        }
    };
    text("provider_id", &mut errors);
    let client_id = text("client_id", &mut errors);
    // Not trimmed: a secret is taken as given.
    let client_secret = match obj.get("client_secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::new(s.clone())),
        Some(_) => {
            errors.push(FieldError::new(
                "client_secret",
                "must be a non-empty string",
            ));
            None
        }
    };
    if method == Some(Method::ClientCredentials) {
        if client_id.is_none() && !errors.iter().any(|e| e.name == "client_id") {
            errors.push(FieldError::new(
                "client_id",
                "required for client_credentials",
            ));
        }
        if client_secret.is_none() && !errors.iter().any(|e| e.name == "client_secret") {
            errors.push(FieldError::new(
                "client_secret",
                "required for client_credentials",
            ));
        }
    } else if client_secret.is_some() {
        errors.push(FieldError::new(
            "client_secret",
            "only for method client_credentials",
        ));
    }
    if !errors.is_empty() || endpoint.is_none() || method.is_none() {
        return Err(Problem::invalid(errors));
    }
    // The checks above named every mistake; the typed body is what is used. Strings
    // are trimmed as the checks read them (the secret is taken as given).
    let trim = |s: String| s.trim().to_string();
    let trim_opt = |s: Option<String>| s.map(trim);
    Ok(match typed::<LoginBody>(body).map_err(Problem::invalid)? {
        LoginBody::Interactive(b) => LoginRequest {
            endpoint: trim(b.endpoint),
            method: match b.method {
                None | Some(InteractiveMethod::Device) => Method::Device,
                Some(InteractiveMethod::Browser) => Method::Browser,
            },
            provider_id: trim_opt(b.provider_id),
            client_id: trim_opt(b.client_id),
            client_secret: None,
        },
        LoginBody::ClientCredentials(b) => LoginRequest {
            endpoint: trim(b.endpoint),
            method: Method::ClientCredentials,
            provider_id: trim_opt(b.provider_id),
            client_id: Some(trim(b.client_id)),
            client_secret: Some(SecretString::new(b.client_secret)),
        },
    })
}

/// Where a login attempt stands: `pending`, `logged_in`, `failed` or `expired`.
#[utoipa::path(get, path = "/auth/logins/{login_id}", tag = "backends",
    params(("login_id" = String, Path, description = "From POST /auth/login")),
    responses(
        (status = 200, description = "The attempt", body = LoginStatus),
        (status = 404, description = "No such attempt", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn login_status(
    State(d): State<App>,
    Path(login_id): Path<String>,
) -> Result<Json<LoginStatus>, Problem> {
    Ok(Json(d.auth().attempt(&login_id)?))
}

/// The redirect of a browser login.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    /// Authorization code.
    code: Option<String>,
    /// The single-use state of the login.
    state: Option<String>,
    /// An OAuth error instead of a code.
    error: Option<String>,
}

/// Where the identity provider sends the browser back after a browser login; answers a
/// small page. Needs no API token (the single-use `state` and PKCE protect it).
#[utoipa::path(get, path = "/auth/callback", tag = "backends", params(CallbackQuery),
    security(()),
    responses(
        (status = 200, description = "Logged in: a page saying the tab can be closed", content_type = "text/html"),
        (status = 400, description = "Unknown state, refused or failed login", content_type = "text/html"),
    ))]
pub async fn callback(State(d): State<App>, Query(q): Query<CallbackQuery>) -> Response {
    let outcome = d
        .auth()
        .callback(q.state.as_deref(), q.code.as_deref(), q.error.as_deref())
        .await;
    let (status, title, text) = match outcome {
        Ok(endpoint) => (
            StatusCode::OK,
            "Logged in",
            format!(
                "eodispatch is now logged in to {}. You can close this tab.",
                html_escape(&endpoint)
            ),
        ),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            "Login failed",
            html_escape(&message),
        ),
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>eodispatch: {title}</title>\
         <style>body{{font-family:sans-serif;max-width:36em;margin:4em auto;color:#222}}</style>\
         </head><body><h1>{title}</h1><p>{text}</p></body></html>"
    );
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(page),
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Log out of a backend: its refresh token (or client secret) leaves the keyring.
#[utoipa::path(post, path = "/auth/logout", tag = "backends",
    request_body = LogoutBody,
    responses(
        (status = 200, description = "Logged out; the backend as it is now", body = BackendEntry),
        (status = 422, description = "Invalid endpoint", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The keyring could not be reached", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(d): State<App>,
    ApiJson(body): ApiJson,
) -> Result<Json<BackendEntry>, Problem> {
    let endpoint = match body.get("endpoint") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(Problem::invalid_field(
                "endpoint",
                "required: the backend URL",
            ))
        }
    };
    let mut errors = Vec::new();
    if let Err(reason) = check_http_url(&endpoint) {
        errors.push(FieldError::new("endpoint", reason));
    }
    if let Some(obj) = body.as_object() {
        for k in obj.keys().filter(|k| *k != "endpoint") {
            errors.push(FieldError::new(k.clone(), "unknown field"));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let body: LogoutBody = typed(&body).map_err(Problem::invalid)?;
    Ok(Json(d.logout(body.endpoint.trim()).await?))
}
