//! Crash tests: with `EODISPATCH_FAILPOINT=<name>` in its environment the daemon aborts
//! when it reaches the failpoint of that name, so that tests can check what a crash at
//! exactly that moment leaves behind. Points: `submit:before_post`, `submit:after_post`,
//! `submit:after_link` (a submission), `refresh:after_store` (a rotated refresh token
//! was just written to the token store), `token:written` (the API token file's content
//! is written, not yet in place).
//!
//! Kept ours rather than the `fail` crate: its points exist only in a build with its
//! `failpoints` feature, so either the crash tests would run another binary than the
//! one installed (and every test run would need that feature build), or every build
//! would carry its general `FAILPOINTS` switch, which that crate says not to ship. It
//! has no action that ends the process at once (a crash test needs `kill -9`
//! semantics: no unwinding, no destructors, no flush), only a closure per point. Here
//! the points are always compiled in, answer to one variable of ours, and cost one
//! comparison when it is not set.

/// Environment variable naming the failpoint at which the daemon aborts.
pub const FAILPOINT_ENV: &str = "EODISPATCH_FAILPOINT";

/// Panics the first time it is reached when `EODISPATCH_FAILPOINT` is `name` (a worker
/// that panics on a strange answer: it must be restarted with its jobs intact). Points:
/// `panic:scheduler` (a backend worker's cycle), `panic:delivery` (a result delivery).
pub(crate) fn panic_once(name: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var(FAILPOINT_ENV).ok().as_deref() == Some(name)
        && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        panic!("failpoint {name} reached");
    }
}

/// Aborts the process when `EODISPATCH_FAILPOINT` is `name`.
pub(crate) fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var(FAILPOINT_ENV).ok());
    if point.as_deref() == Some(name) {
        eprintln!("eodispatch: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
