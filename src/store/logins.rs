//! Backend logins: which OIDC provider and client each logged-in backend uses (never a
//! secret; the secrets are in the OS keyring under issuer and client id).

use rusqlite::{params, OptionalExtension as _};

use super::{Store, StoreError};
use crate::job::{now_utc, rfc3339_z};

/// One backend's login, as remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    /// Normalised backend URL.
    pub endpoint: String,
    /// OIDC provider id of the backend (`oidc/<provider_id>/...`).
    pub provider_id: String,
    /// The provider's title.
    pub provider_title: Option<String>,
    /// Issuer URL.
    pub issuer: String,
    /// OAuth client id.
    pub client_id: String,
    /// `device`, `browser` or `client_credentials`.
    pub method: String,
}

impl Store {
    /// Remembers (or replaces) a backend's login.
    pub async fn put_login(&self, r: LoginRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO backend_logins
                   (endpoint, provider_id, provider_title, issuer, client_id, method, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (endpoint) DO UPDATE SET
                   provider_id = excluded.provider_id, provider_title = excluded.provider_title,
                   issuer = excluded.issuer, client_id = excluded.client_id,
                   method = excluded.method, created = excluded.created",
                params![
                    r.endpoint,
                    r.provider_id,
                    r.provider_title,
                    r.issuer,
                    r.client_id,
                    r.method,
                    rfc3339_z::format(&now_utc())
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets a backend's login; `true` if there was one.
    pub async fn delete_login(&self, endpoint: String) -> Result<bool, StoreError> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM backend_logins WHERE endpoint = ?1",
                params![endpoint],
            )? > 0)
        })
        .await
    }

    /// One backend's login.
    pub async fn login(&self, endpoint: String) -> Result<Option<LoginRecord>, StoreError> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT endpoint, provider_id, provider_title, issuer, client_id, method
                 FROM backend_logins WHERE endpoint = ?1",
                params![endpoint],
                row,
            )
            .optional()?)
        })
        .await
    }

    /// Every remembered login.
    pub async fn logins(&self) -> Result<Vec<LoginRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT endpoint, provider_id, provider_title, issuer, client_id, method
                 FROM backend_logins ORDER BY endpoint",
            )?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoginRecord> {
    Ok(LoginRecord {
        endpoint: r.get(0)?,
        provider_id: r.get(1)?,
        provider_title: r.get(2)?,
        issuer: r.get(3)?,
        client_id: r.get(4)?,
        method: r.get(5)?,
    })
}
