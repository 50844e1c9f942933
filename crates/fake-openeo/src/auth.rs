//! Bearer authentication: `Authorization: Bearer oidc/<provider>/<token>` or
//! `Bearer basic//<token>`, checked by the configured [`TokenCheck`]. A missing header is
//! 401 `AuthenticationRequired`; anything malformed or rejected is 403 `TokenInvalid`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};

use crate::config::TokenCheck;
use crate::error::ApiError;
use crate::state::Shared;

/// How long userinfo answers are cached.
const USERINFO_CACHE: Duration = Duration::from_secs(5);

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
}

impl FromRequestParts<Arc<Shared>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION)
            && matches!(shared.token_check().as_ref(), TokenCheck::Anonymous)
        {
            return Ok(User {
                id: "anonymous".into(),
                name: "Anonymous".into(),
            });
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::new(
                    401,
                    "AuthenticationRequired",
                    "Unauthorized: the request requires authentication (Authorization: Bearer oidc/<provider>/<token>).",
                )
            })?
            .to_str()
            .map_err(|_| ApiError::token_invalid())?;
        let (scheme, value) = header.split_once(' ').ok_or_else(ApiError::token_invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::token_invalid());
        }
        let mut parts3 = value.trim().splitn(3, '/');
        let (method, provider, token) = match (parts3.next(), parts3.next(), parts3.next()) {
            (Some(m), Some(p), Some(t)) => (m, p, t),
            _ => return Err(ApiError::token_invalid()),
        };
        match method {
            "oidc" => {
                let known = shared
                    .config
                    .effective_providers()
                    .iter()
                    .any(|p| p.id == provider);
                if !known {
                    return Err(ApiError::token_invalid());
                }
            }
            "basic" if provider.is_empty() => {}
            _ => return Err(ApiError::token_invalid()),
        }
        if token.is_empty() {
            return Err(ApiError::token_invalid());
        }
        check_token(shared, token).await
    }
}

async fn check_token(shared: &Shared, token: &str) -> Result<User, ApiError> {
    match shared.token_check().as_ref() {
        TokenCheck::Any | TokenCheck::Anonymous => Ok(User {
            id: "user".into(),
            name: "Fake User".into(),
        }),
        TokenCheck::Static(tokens) => {
            if tokens.contains(token) {
                let id = sanitize(token);
                Ok(User {
                    name: format!("Fake user {id}"),
                    id,
                })
            } else {
                Err(ApiError::token_invalid())
            }
        }
        TokenCheck::Userinfo { url } => {
            if let Some(hit) = cached(shared, token) {
                return hit.ok_or_else(ApiError::token_invalid);
            }
            let answer = shared
                .http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| {
                    ApiError::new(
                        503,
                        "ServiceUnavailable",
                        format!("The identity provider could not be reached: {e}"),
                    )
                })?;
            let user = if answer.status().is_success() {
                let info: serde_json::Value = answer.json().await.unwrap_or_default();
                let sub = info
                    .get("sub")
                    .and_then(|v| v.as_str())
                    .map(sanitize)
                    .unwrap_or_else(|| "user".into());
                let name = info
                    .get("name")
                    .or_else(|| info.get("preferred_username"))
                    .and_then(|v| v.as_str())
                    .unwrap_or(&sub)
                    .to_string();
                Some(User { id: sub, name })
            } else {
                None
            };
            remember(shared, token, Instant::now(), &user);
            user.ok_or_else(ApiError::token_invalid)
        }
        TokenCheck::Introspect {
            url,
            client_id,
            client_secret,
        } => {
            if let Some(hit) = cached(shared, token) {
                return hit.ok_or_else(ApiError::token_invalid);
            }
            let answer = shared
                .http
                .post(url)
                .basic_auth(client_id, Some(client_secret))
                .form(&[("token", token)])
                .send()
                .await
                .map_err(|e| {
                    ApiError::new(
                        503,
                        "ServiceUnavailable",
                        format!("The identity provider could not be reached: {e}"),
                    )
                })?;
            let info: serde_json::Value = if answer.status().is_success() {
                answer.json().await.unwrap_or_default()
            } else {
                serde_json::Value::Null
            };
            let active = info.get("active").and_then(|v| v.as_bool()) == Some(true);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let exp = info.get("exp").and_then(|v| v.as_u64());
            let user = if active && exp.is_none_or(|e| e > now) {
                let sub = info
                    .get("sub")
                    .or_else(|| info.get("client_id"))
                    .and_then(|v| v.as_str())
                    .map(sanitize)
                    .unwrap_or_else(|| "user".into());
                Some(User {
                    name: sub.clone(),
                    id: sub,
                })
            } else {
                None
            };
            // Cache for USERINFO_CACHE, but never past the token's expiry.
            let cache_from = match exp {
                Some(e) if user.is_some() => {
                    let left = Duration::from_secs(e.saturating_sub(now));
                    Instant::now()
                        .checked_sub(USERINFO_CACHE.saturating_sub(left))
                        .unwrap_or_else(Instant::now)
                }
                _ => Instant::now(),
            };
            remember(shared, token, cache_from, &user);
            user.ok_or_else(ApiError::token_invalid)
        }
    }
}

/// Caches an answer about `token` as if it had been given at `at`.
fn remember(shared: &Shared, token: &str, at: Instant, user: &Option<User>) {
    shared
        .token_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entries
        .insert(
            token.to_string(),
            (at, user.clone().map(|u| (u.id, u.name))),
        );
}

fn cached(shared: &Shared, token: &str) -> Option<Option<User>> {
    let mut cache = shared.token_cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entries
        .retain(|_, (at, _)| at.elapsed() < USERINFO_CACHE);
    cache
        .entries
        .get(token)
        .map(|(_, u)| u.clone().map(|(id, name)| User { id, name }))
}

/// A user id matching `^[\w\-\.~]+$`.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '~') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "user".into()
    } else {
        out
    }
}
