//! What the store knows of money (migration 6): what jobs on a backend have cost or are
//! committed to cost since a moment, and what a task's tiles have, for budgets
//! (`job::cost::check_budgets`).
//!
//! A job counts with what the platform reported (`costs`) or else its estimate
//! (`estimate_amount`): a job that is accepted commits its estimate until the platform
//! says what it really cost. Jobs that ended without ever reaching the platform cost
//! nothing.

use rusqlite::params;

use super::{Store, StoreError};
use crate::job::cost::{Limits, Spent};

/// What counts of a job: its reported cost, else its estimate; nothing for a job that
/// ended before the platform had it.
const COST_OF_JOB: &str = "coalesce(costs, CASE WHEN backend_job_id IS NULL \
    AND status IN ('failed', 'canceled') THEN 0 ELSE estimate_amount END, 0)";

/// The starts of today and of this month (UTC), as stored timestamps compare: the
/// windows of `budget_per_day` and `budget_per_month`.
pub fn budget_windows() -> [String; 2] {
    let now = crate::job::now_utc();
    let day = now.replace_time(time::Time::MIDNIGHT);
    let month = day.replace_day(1).unwrap_or(day);
    [
        crate::job::rfc3339_z::format(&day),
        crate::job::rfc3339_z::format(&month),
    ]
}

impl Store {
    /// What jobs on the backend `endpoint` (compared without a trailing `/`) created at
    /// or after each of `since` (RFC 3339 UTC, e.g. the start of the day and of the
    /// month) cost or are committed to cost. `sent_only`: only jobs submitted to the
    /// platform (what a job about to be sent is added to); otherwise every job
    /// accepted (what a new submission is added to).
    pub async fn spent_since(
        &self,
        endpoint: String,
        since: [String; 2],
        sent_only: bool,
    ) -> Result<[f64; 2], StoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT coalesce(sum(CASE WHEN created >= ?2 THEN {COST_OF_JOB} END), 0), \
                        coalesce(sum(CASE WHEN created >= ?3 THEN {COST_OF_JOB} END), 0) \
                 FROM unit_jobs WHERE rtrim(endpoint, '/') = rtrim(?1, '/') \
                 AND created >= min(?2, ?3) AND (NOT ?4 OR submit_state != 'pending')"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let row = stmt.query_row(params![endpoint, since[0], since[1], sent_only], |r| {
                Ok([r.get::<_, f64>(0)?, r.get::<_, f64>(1)?])
            })?;
            Ok(row)
        })
        .await
    }

    /// What counts against `limits` for a job on `endpoint`: `own` (its task's spending,
    /// 0 for a job alone) and, when the backend has a daily or monthly budget, what was
    /// spent on it today and this month ([`Store::spent_since`]; `sent_only` as there).
    pub async fn spent_against(
        &self,
        limits: Limits,
        endpoint: &str,
        own: f64,
        sent_only: bool,
    ) -> Result<Spent, StoreError> {
        let [today, month] = if limits.per_day.is_some() || limits.per_month.is_some() {
            self.spent_since(endpoint.to_string(), budget_windows(), sent_only)
                .await?
        } else {
            [0.0, 0.0]
        };
        Ok(Spent { own, today, month })
    }

    /// What the sub-jobs of task `id` that were sent to the platform cost or are
    /// committed to cost, and the task's `max_cost`.
    pub async fn task_spent(&self, id: i64) -> Result<(f64, Option<f64>), StoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT (SELECT coalesce(sum({COST_OF_JOB}), 0) FROM unit_jobs \
                   WHERE upscale_task_id = ?1 AND submit_state != 'pending'), \
                   (SELECT max_cost FROM upscale_tasks WHERE id = ?1)"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            Ok(stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
        .await
    }
}
