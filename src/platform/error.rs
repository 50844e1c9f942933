//! The one classification of platform failures, shared by every adapter: what the
//! scheduler, result delivery and the HTTP edge need to know to decide (wait and try
//! again, log in, give up with the backend's own words), never how a protocol said it.

use std::time::Duration;

/// What went wrong talking to a backend (openEO or OGC API Processes).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Could not connect at all: the request was certainly not received.
    #[error("cannot reach {backend}: {reason}")]
    Unreachable {
        /// Backend URL (no query).
        backend: String,
        /// Why.
        reason: String,
    },
    /// The request may have been received but no usable answer came back (timeout,
    /// connection dropped mid-answer, or a gateway error answering a submission). A
    /// submission that fails this way must be reconciled, not retried.
    #[error("no answer from {backend}: {reason}")]
    NoAnswer {
        /// Backend URL.
        backend: String,
        /// Why.
        reason: String,
    },
    /// 429 / 502 / 503 / 504 (and 500 for idempotent requests): try again later.
    #[error("{backend} is busy or failing (HTTP {status}): {message}")]
    Transient {
        /// Backend URL.
        backend: String,
        /// HTTP status.
        status: u16,
        /// Backend message (or a summary of an HTML body).
        message: String,
        /// Retry-After, when given (capped at [`super::http::MAX_RETRY_AFTER`]).
        retry_after: Option<Duration>,
    },
    /// Missing, expired or rejected credentials (401, 403 `TokenInvalid`, no login).
    #[error("{backend} needs a login: {message}")]
    Auth {
        /// Backend URL.
        backend: String,
        /// The backend's error code (e.g. `TokenInvalid`) or ours (`LoginRequired`).
        code: String,
        /// Backend message.
        message: String,
    },
    /// The backend refused the request: it is wrong for this backend (bad input,
    /// missing permission, a process that does not run).
    #[error("{backend} refused the request (HTTP {status} {code}): {message}")]
    Rejected {
        /// Backend URL.
        backend: String,
        /// HTTP status.
        status: u16,
        /// The backend's error code (openEO `ProcessNamespaceInvalid`, OGC
        /// `invalid-parameter-value`, ...).
        code: String,
        /// Backend message.
        message: String,
    },
    /// The thing asked for does not exist (404): a job the backend forgot or never
    /// had, a process it does not offer.
    #[error("{backend} does not know it (HTTP 404 {code}): {message}")]
    NotFound {
        /// Backend URL.
        backend: String,
        /// The backend's error code (openEO `JobNotFound`, OGC `no-such-job`, ...).
        code: String,
        /// Backend message.
        message: String,
    },
    /// A 2xx answer that does not follow the protocol (or a backend URL that cannot
    /// be used at all).
    #[error("unexpected answer from {backend}: {reason}")]
    Protocol {
        /// Backend URL.
        backend: String,
        /// What was wrong.
        reason: String,
    },
}

impl PlatformError {
    /// Whether trying again later may succeed: [`Unreachable`](Self::Unreachable),
    /// [`NoAnswer`](Self::NoAnswer) and [`Transient`](Self::Transient). A `NoAnswer` to
    /// a submission still needs reconciling before any new attempt.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PlatformError::Unreachable { .. }
                | PlatformError::NoAnswer { .. }
                | PlatformError::Transient { .. }
        )
    }

    /// Whether the backend wants a (new) login.
    pub fn is_auth(&self) -> bool {
        matches!(self, PlatformError::Auth { .. })
    }

    /// Whether the backend says the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PlatformError::NotFound { .. })
    }

    /// How long the backend asked us to wait (`Retry-After`), capped.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PlatformError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable machine-readable code: `BackendUnreachable` (also for `NoAnswer`),
    /// `BackendBusy`, the backend's own code for `Auth`, `Rejected` and `NotFound`
    /// (e.g. `TokenInvalid`, `JobNotFound`, `no-such-process`), `BackendProtocol`.
    pub fn code(&self) -> &str {
        match self {
            PlatformError::Unreachable { .. } | PlatformError::NoAnswer { .. } => {
                "BackendUnreachable"
            }
            PlatformError::Transient { .. } => "BackendBusy",
            PlatformError::Auth { code, .. }
            | PlatformError::Rejected { code, .. }
            | PlatformError::NotFound { code, .. } => code,
            PlatformError::Protocol { .. } => "BackendProtocol",
        }
    }

    /// The HTTP status the backend answered with, if it answered with an error status.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            PlatformError::Transient { status, .. } | PlatformError::Rejected { status, .. } => {
                Some(*status)
            }
            PlatformError::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    /// The state a backend is in after this failure, as `GET /backends` shows it:
    /// `login_required`, `unreachable`, or `None` (the backend answered: it is up).
    pub fn backend_state(&self) -> Option<&'static str> {
        match self {
            PlatformError::Auth { .. } => Some("login_required"),
            e if e.is_transient() => Some("unreachable"),
            _ => None,
        }
    }
}
