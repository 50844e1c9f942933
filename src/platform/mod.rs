//! Outside platforms, behind one seam: everything that differs between an openEO
//! backend and an OGC API Processes server is an implementation of [`Platform`]; the
//! scheduler, result delivery, the application layer, the API and the CLI call it and
//! never match on the job's label. [`connect`] is the one place that does.
//!
//! - [`openeo`]: openEO backends (a UDP called by URL, batch jobs, STAC results);
//! - [`ogc`]: OGC API Processes servers (Part 1: Core 1.0);
//! - [`udp`]: service definitions and their parameters (openEO UDPs, and the
//!   parameter descriptions both kinds share), cached;
//! - `schema`: checking arguments against a parameter's JSON Schema with the
//!   `jsonschema` crate (draft 07, openEO's `subtype`, nothing fetched);
//! - [`http`]: HTTP towards one backend (timeouts, credential, error classification);
//! - [`error`]: the one classification of failures ([`PlatformError`]);
//! - [`backends`]: the registry of backends in use (limits, rate, reachability).
//!
//! Credentials come in through [`crate::credentials::Logins`]: this module does not
//! know how the user logged in, only that a token can be had.

pub mod backends;
pub mod error;
pub mod http;
pub mod ogc;
pub mod openeo;
mod schema;
pub mod udp;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use error::PlatformError;

use crate::config::BackendConfig;
use crate::credentials::{LoginProvider, Logins};
use crate::job::validate::FieldError;
use crate::job::{Job, Label, ServiceDetails, Status};
use udp::{ParamDescriptor, UdpCache};

/// A job as its platform reports it, in our words.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteJob {
    /// The platform's job id.
    pub id: String,
    /// Our status; `None` for a word we do not know (the job is left as it is).
    pub status: Option<Status>,
    /// The platform's own status word (openEO `error`, OGC `accepted`, ...).
    pub raw_status: String,
    /// Progress in percent, when reported.
    pub progress: Option<f64>,
    /// A status message, when reported (OGC `message`).
    pub message: Option<String>,
    /// When the platform created the job, when reported.
    pub created: Option<OffsetDateTime>,
    /// Which process it runs, when reported (OGC `processID`).
    pub process_id: Option<String>,
    /// Free text the client sent with the job, when reported (openEO `description`,
    /// where our UUID travels).
    pub description: Option<String>,
    /// What the job cost, when reported (openEO `costs`, after it ended).
    pub costs: Option<f64>,
    /// Resources used, when reported (openEO `usage`).
    pub usage: Option<Value>,
}

/// What a submission did.
#[derive(Debug)]
pub enum Submission {
    /// The job exists and must be started ([`Platform::start`]; openEO).
    Created {
        /// The platform's id of the new job.
        remote_id: String,
    },
    /// The job exists and runs on its own (OGC asynchronous execution): its status.
    Running(RemoteJob),
    /// The work was done while we waited (synchronous execution): the answer is the
    /// result. `remote_id` when the server also names a job for it.
    Completed {
        /// The server's job id, if it gave one.
        remote_id: Option<String>,
        /// The answer.
        answer: Payload,
    },
}

/// An answer kept as it came: bytes and media type.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// `Content-Type` without parameters, lower case.
    pub media_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// What reconciliation found about a submission whose answer was lost.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// This remote job is the one: link it.
    Found(Box<RemoteJob>),
    /// The platform certainly has no such job: submitting again is safe.
    NotCreated,
    /// The platform cannot tell: the job must not be submitted again by itself. The
    /// text says why, in words for the user.
    Uncertain(String),
}

/// A request ready to send, built from a job and its service definition (before the
/// job is marked as being submitted, so that a missing definition never leaves a job
/// half-sent).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The body to send.
    pub body: Value,
    /// Whether the platform is asked to run it asynchronously (OGC `respond-async`).
    pub asynchronous: bool,
}

/// A results document, in one shape for every platform: a STAC-like JSON object whose
/// `assets` (key → `{href, type, title, file:size, file:checksum, ...}`) are downloaded,
/// plus outputs that came inline (saved as files) and literal values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultsDoc {
    /// The document: `assets` to fetch (signed links: fetch a fresh one before use).
    pub document: Value,
    /// Outputs given inline, saved as files.
    pub inline: Vec<InlineFile>,
    /// Literal outputs (numbers, strings, small JSON), kept in the manifest.
    pub literals: Map<String, Value>,
}

/// An output that came inline, to be saved as a file.
#[derive(Debug, Clone, PartialEq)]
pub struct InlineFile {
    /// Output id.
    pub key: String,
    /// File name (sanitised later), with the extension of its media type.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// An output of a service, for clients that want to know what comes back.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OutputDescriptor {
    /// Output id.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Description (may be empty).
    pub description: String,
    /// Media types the service can give it in.
    pub media_types: Vec<String>,
    /// The output's schema as written.
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// A service's definition: what `POST /params` shows and what arguments are checked
/// against.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// Title, when the definition has one.
    pub title: Option<String>,
    /// Description, when the definition has one.
    pub description: Option<String>,
    /// Parameters, in the definition's order.
    pub parameters: Vec<ParamDescriptor>,
    /// Outputs.
    pub outputs: Vec<OutputDescriptor>,
    /// The signature arguments are checked against.
    signature: Arc<udp::Udp>,
}

impl ServiceDef {
    /// Checks a job's arguments; returns what will be sent (a polygon given for a
    /// bounding box becomes its box, in the form the service expects). Errors are named
    /// `parameters.<name>`.
    pub fn validate(
        &self,
        args: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<FieldError>> {
        udp::validate_arguments(&self.signature, args)
    }
}

/// Why a service definition could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// Not now (no answer, a server error): try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The backend wants a login before it describes the service.
    #[error("{0}")]
    LoginRequired(String),
    /// `service.application` (or the endpoint) does not name a usable service.
    #[error("{0}")]
    Invalid(String),
    /// The job's arguments do not fit the service (found when a job accepted before
    /// its service could be described is about to be sent).
    #[error("{0}")]
    Arguments(String),
}

/// What a backend says about itself, once asked (no I/O to read).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BackendInfo {
    /// API version (openEO `api_version`; OGC: the conformance core class version).
    pub api_version: String,
    /// Server software version, when given.
    pub backend_version: String,
    /// Title.
    pub title: String,
}

/// One backend of one platform kind. Every method that talks to the backend goes
/// through its [`http::HttpBackend`]; none retries (the scheduler does).
#[async_trait]
pub trait Platform: Send + Sync {
    /// The label of the jobs this platform runs.
    fn label(&self) -> Label;

    /// The HTTP side (endpoint, fixed token, request count).
    fn http(&self) -> &http::HttpBackend;

    /// The definition of a service (cached).
    async fn service(&self, service: &ServiceDetails) -> Result<Arc<ServiceDef>, ServiceError>;

    /// Builds the submission of `job` (its service definition is fetched if needed).
    async fn prepare(&self, job: &Job) -> Result<Prepared, ServiceError>;

    /// Sends the submission. Never retried: a [`PlatformError::NoAnswer`] means the
    /// job may exist and must be reconciled.
    async fn submit(&self, job: &Job, prepared: &Prepared) -> Result<Submission, PlatformError>;

    /// Starts a job created by [`Submission::Created`] (idempotent).
    async fn start(&self, remote_id: &str) -> Result<(), PlatformError>;

    /// Runs the prepared job synchronously (openEO `POST /result`): the answer is the
    /// result itself. Platforms without such a mode refuse.
    async fn run_sync(&self, _job: &Job, _prepared: &Prepared) -> Result<Payload, PlatformError> {
        Err(PlatformError::Rejected {
            backend: self.http().endpoint().to_string(),
            status: 400,
            code: "SyncNotSupported".into(),
            message: "synchronous processing is offered for openEO services only; \
                      submit the job with POST /unit_jobs"
                .into(),
        })
    }

    /// The platform's jobs, in one listing (stopping early once every id in `covering`
    /// was seen); `None` when the platform offers no listing.
    async fn list_jobs(
        &self,
        covering: Option<&HashSet<String>>,
    ) -> Result<Option<Vec<RemoteJob>>, PlatformError>;

    /// One job's status.
    /// The platform's own estimate of what a created, not yet started job will cost
    /// (openEO `GET /jobs/{id}/estimate`); `None` where it offers none.
    async fn backend_estimate(&self, _remote_id: &str) -> Result<Option<f64>, PlatformError> {
        Ok(None)
    }

    async fn job(&self, remote_id: &str) -> Result<RemoteJob, PlatformError>;

    /// Looks for the remote job of a submission whose answer was lost. `listing` is a
    /// fresh [`list_jobs`](Self::list_jobs) (`None`: the platform has none); `linked`
    /// holds remote ids that belong to other local jobs.
    async fn reconcile(
        &self,
        job: &Job,
        listing: Option<&[RemoteJob]>,
        linked: &HashSet<String>,
    ) -> Result<Reconciled, PlatformError>;

    /// Cancels (openEO) or dismisses (OGC) a job. A job the platform no longer knows is
    /// [`PlatformError::NotFound`].
    async fn cancel(&self, remote_id: &str) -> Result<(), PlatformError>;

    /// A job's log: `{logs: [{id, level, message, time?}], links: []}`.
    async fn logs(
        &self,
        remote_id: &str,
        offset: Option<&str>,
        level: Option<&str>,
    ) -> Result<Value, PlatformError>;

    /// The platform's own words about a failed job.
    async fn failure_message(&self, remote: &RemoteJob) -> Option<String>;

    /// A finished job's results (fresh: asset links may be signed and expire).
    async fn results(&self, remote_id: &str) -> Result<ResultsDoc, PlatformError>;

    /// The results in the answer of a synchronous execution.
    async fn results_from_answer(&self, answer: &Payload) -> Result<ResultsDoc, PlatformError>;

    /// The `Authorization` value for downloading `url`: the credential only for the
    /// backend's own origin, never for a pre-signed link elsewhere.
    async fn download_authorization(&self, url: &Url)
        -> Result<Option<HeaderValue>, PlatformError>;

    /// The identity providers the backend accepts (to log in).
    async fn login_providers(&self) -> Result<Vec<LoginProvider>, PlatformError>;

    /// What the backend said about itself, if asked already (no I/O).
    fn info(&self) -> Option<BackendInfo>;

    /// Asks the backend about itself (capabilities, conformance); errors are ignored
    /// (the next call tries again).
    async fn probe(&self);

    /// Is the backend answering right now (no cache)?
    async fn ping(&self) -> Result<(), PlatformError>;

    /// Completes credentials that need a request first (an openEO token from the
    /// configuration whose provider id is still unknown).
    async fn ensure_credentials(&self) -> Result<(), PlatformError> {
        Ok(())
    }

    /// Applies a changed configuration section (a fixed token).
    fn reconfigure(&self, config: Option<&BackendConfig>);
}

/// Backends known out of the box: those the bundled APEx service records run on.
pub const KNOWN_BACKENDS: &[(Label, &str)] =
    &[(Label::Openeo, "https://openeofed.dataspace.copernicus.eu")];

/// The platform kind and service of a catalogue record (an APEx OGC API Records
/// feature), from its `conformsTo` and links; `None` when it cannot be run.
///
/// - kind: openEO when the record conforms to `.../openeo-udp` or its `application` link
///   has an `application/vnd.openeo+json` type, OGC API Processes otherwise;
/// - openEO: `endpoint` is the `service` link (the backend), `application` the
///   `application` link (the UDP URL);
/// - OGC API Processes: the `service` link is the process's full URL, split into the
///   server (`endpoint`), the path before `/processes` (`namespace`) and the process id
///   (`application`); the `application` link (the CWL package) is not needed to run it.
pub fn service_of_record(record: &Value) -> Option<(Label, ServiceDetails)> {
    let links = record.get("links")?.as_array()?;
    let link = |rel: &str| {
        links
            .iter()
            .find(|l| l.get("rel").and_then(Value::as_str) == Some(rel))
    };
    let href = |l: &Value| l.get("href").and_then(Value::as_str).map(str::to_string);
    let app_link = link("application")?;
    let application = href(app_link)?;
    let service = href(link("service")?)?;
    let conforms_openeo = record
        .get("conformsTo")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .any(|s| s.ends_with("/openeo-udp"))
        });
    let openeo_type = app_link
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("application/vnd.openeo+json"));
    if conforms_openeo || openeo_type {
        return Some((
            Label::Openeo,
            ServiceDetails {
                endpoint: service,
                namespace: None,
                application,
            },
        ));
    }
    let url = Url::parse(&service).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let at = segments.iter().rposition(|s| *s == "processes")?;
    let id = segments.get(at + 1).filter(|_| at + 2 == segments.len())?;
    let namespace = segments[..at].join("/");
    Some((
        Label::OgcApiProcess,
        ServiceDetails {
            endpoint: url.origin().ascii_serialization(),
            namespace: (!namespace.is_empty()).then_some(namespace),
            application: (*id).to_string(),
        },
    ))
}

/// The platform of `label` for `endpoint`: the one place that chooses by label.
pub fn connect(
    label: Label,
    endpoint: &str,
    config: Option<&BackendConfig>,
    logins: Arc<dyn Logins>,
    udps: &UdpCache,
) -> Arc<dyn Platform> {
    match label {
        Label::Openeo => Arc::new(openeo::OpenEo::new(endpoint, config, logins, udps.clone())),
        Label::OgcApiProcess => Arc::new(ogc::Ogc::new(endpoint, config, logins)),
    }
}
