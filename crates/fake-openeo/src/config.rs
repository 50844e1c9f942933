//! Configuration of a fake backend: [`FakeConfig`] and the types it is made of — how tokens are
//! checked ([`TokenCheck`]), the OIDC providers it advertises ([`OidcProvider`]), how jobs run
//! ([`JobPlan`], [`PlanRule`]) and what the result files contain ([`AssetSource`]).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::faults::FaultRule;

/// The UDP fixture folder known at build time: the bundled APEx catalogue snapshot of the
/// workspace (`catalog/apex/algorithm_catalog`, UDPs in `<provider>/<service>/openeo_udp/`).
pub const DEFAULT_UDP_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../catalog/apex/algorithm_catalog"
);

/// The issuer advertised by default; nothing listens there (port 1), which is the point: a test
/// that needs a real identity provider sets [`FakeConfig::issuer`].
pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:1/fake-issuer";

/// Everything that makes one fake backend behave the way a test wants.
///
/// All fields are public; start from [`FakeConfig::default`] and change what matters, or use the
/// `with_*` helpers.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Address to bind; loopback by default.
    pub bind: IpAddr,
    /// Port to bind; 0 picks a free one (see [`crate::FakeHandle::base_url`]).
    pub port: u16,
    /// Folder with the UDP JSON files that remote `namespace` URLs resolve to (by file name,
    /// directly in it or in subfolders).
    pub udp_dir: PathBuf,
    /// How jobs run when no [`PlanRule`] matches.
    pub plan: JobPlan,
    /// Per-job plans, matched on title/description substring or job id; first match wins.
    pub plan_rules: Vec<PlanRule>,
    /// Lifetime of signed asset and canonical links, in seconds.
    pub link_ttl_secs: u64,
    /// How bearer tokens are validated.
    pub token_check: TokenCheck,
    /// Issuer of the default `fake` OIDC provider.
    pub issuer: String,
    /// Providers listed at `/credentials/oidc`; `None` lists the single `fake` provider,
    /// an empty list none (a backend that offers no login).
    pub providers: Option<Vec<OidcProvider>>,
    /// Whether assets carry `file:checksum` (multihash sha256).
    pub checksums: bool,
    /// Assets larger than this get no checksum (hashing a huge generated file takes time).
    pub checksum_max_bytes: u64,
    /// Whether asset downloads honour `Range`; `false` simulates a server that ignores it.
    pub ranges_supported: bool,
    /// Content of result files by file name (`openEO.tif`, `openEO.nc`, `vectorcube.geojson`,
    /// `result.json`); files not listed get their default (see [`AssetSource`]).
    pub assets: BTreeMap<String, AssetSource>,
    /// Secret mixed into URL signatures.
    pub signing_secret: String,
    /// Keys (and titles) the results document uses for result files, by file name, e.g.
    /// `openEO.tif` → `../../evil.tif` (a hostile backend); the download URL keeps the
    /// real file name.
    pub asset_keys: BTreeMap<String, String>,
    /// Bandwidth of asset bodies in bytes per second (`None`: as fast as possible), so
    /// that a test can interrupt a download half-way.
    pub asset_bytes_per_sec: Option<u64>,
    /// Asset hrefs point at the unsigned route `/jobs/{id}/results/assets/{file}`, which
    /// needs the bearer token (as some backends do), instead of signed links.
    pub unsigned_asset_links: bool,
    /// `file:size` announced in the results document instead of the real size, by file
    /// name (a backend whose document lies, e.g. `u64::MAX`).
    pub declared_sizes: BTreeMap<String, u64>,
    /// Host (with port) put in signed asset links instead of the API's own, e.g.
    /// `localhost:PORT` while the API is `127.0.0.1:PORT`: pre-signed links "on another
    /// host", as object-storage links are. Default: the API's host.
    pub asset_link_host: Option<String>,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            udp_dir: PathBuf::from(DEFAULT_UDP_DIR),
            plan: JobPlan::default(),
            plan_rules: Vec::new(),
            link_ttl_secs: 3600,
            token_check: TokenCheck::Any,
            issuer: DEFAULT_ISSUER.to_string(),
            providers: None,
            checksums: true,
            checksum_max_bytes: 256 * 1024 * 1024,
            ranges_supported: true,
            assets: BTreeMap::new(),
            signing_secret: "fake-openeo-signing-secret".to_string(),
            asset_keys: BTreeMap::new(),
            asset_bytes_per_sec: None,
            unsigned_asset_links: false,
            asset_link_host: None,
            declared_sizes: BTreeMap::new(),
            faults: Vec::new(),
        }
    }
}

impl FakeConfig {
    /// Sets the queued and running durations of the default plan (seconds).
    pub fn with_timing(mut self, queued_secs: f64, running_secs: f64) -> Self {
        self.plan.queued_secs = queued_secs;
        self.plan.running_secs = running_secs;
        self
    }

    /// Sets the lifetime of signed links.
    pub fn with_link_ttl(mut self, secs: u64) -> Self {
        self.link_ttl_secs = secs;
        self
    }

    /// Sets the token check.
    pub fn with_token_check(mut self, check: TokenCheck) -> Self {
        self.token_check = check;
        self
    }

    /// Adds a per-job plan rule.
    pub fn with_plan_rule(mut self, rule: PlanRule) -> Self {
        self.plan_rules.push(rule);
        self
    }

    /// Sets the content of one result file.
    pub fn with_asset(mut self, file_name: impl Into<String>, source: AssetSource) -> Self {
        self.assets.insert(file_name.into(), source);
        self
    }

    /// Adds a fault rule active from the start.
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// The providers to list: the configured ones, or the single `fake` provider.
    pub(crate) fn effective_providers(&self) -> Vec<OidcProvider> {
        match &self.providers {
            Some(list) => list.clone(),
            None => vec![OidcProvider::fake(&self.issuer)],
        }
    }
}

/// How the fake decides whether a bearer token is valid.
#[derive(Clone, Debug, Default)]
pub enum TokenCheck {
    /// Any non-empty token is valid; every caller is the user `user`.
    #[default]
    Any,
    /// Only these tokens are valid; the user id is the token itself (characters outside
    /// `[A-Za-z0-9_.~-]` replaced by `_`), so different tokens are different users.
    Static(HashSet<String>),
    /// The token is valid if `GET url` with `Authorization: Bearer <token>` answers 200 (an OIDC
    /// userinfo endpoint). The user id is the answer's `sub`, the name its `name` or
    /// `preferred_username`. Answers are cached for a few seconds per token.
    Userinfo {
        /// The userinfo endpoint.
        url: String,
    },
    /// Like `Any`, and a request without `Authorization` is the user `anonymous`
    /// (demos without a login; real backends never do this).
    Anonymous,
    /// The token is valid if the OIDC provider's introspection endpoint (RFC 7662), asked
    /// with HTTP Basic `client_id:client_secret`, says `active: true`. Works for every kind of
    /// access token, including client-credentials tokens that userinfo refuses. The user id
    /// is `sub` (or `client_id` for a service account). Answers are cached for a few seconds,
    /// never past the token's `exp`.
    Introspect {
        /// The introspection endpoint.
        url: String,
        /// Client id the fake authenticates with.
        client_id: String,
        /// Its secret.
        client_secret: String,
    },
}

/// One OIDC provider as listed by `GET /credentials/oidc`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OidcProvider {
    /// Provider id, the middle part of `oidc/<id>/<token>`.
    pub id: String,
    /// Issuer URL without trailing slash.
    pub issuer: String,
    /// Human-readable name.
    pub title: String,
    /// Scopes a client should ask for.
    pub scopes: Vec<String>,
    /// Public clients a tool may use without registering its own.
    pub default_clients: Vec<OidcClient>,
}

/// A default (public) OIDC client of a provider.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OidcClient {
    /// Client id.
    pub id: String,
    /// Grant types the client may use.
    pub grant_types: Vec<String>,
    /// Allowed redirect URLs (for authorization-code flows).
    pub redirect_urls: Vec<String>,
}

impl OidcProvider {
    /// The default provider `fake` with client `fake-client`.
    pub fn fake(issuer: &str) -> Self {
        Self {
            id: "fake".to_string(),
            issuer: issuer.trim_end_matches('/').to_string(),
            title: "Fake identity provider".to_string(),
            scopes: vec!["openid".to_string()],
            default_clients: vec![OidcClient {
                id: "fake-client".to_string(),
                grant_types: vec![
                    "urn:ietf:params:oauth:grant-type:device_code+pkce".to_string(),
                    "refresh_token".to_string(),
                    "authorization_code+pkce".to_string(),
                ],
                redirect_urls: vec![
                    "http://127.0.0.1:8421/auth/callback".to_string(),
                    "http://localhost:8421/auth/callback".to_string(),
                ],
            }],
        }
    }
}

/// How a job ends when it has run its course.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// `finished`, with results.
    #[default]
    Finished,
    /// `error`, with an error log entry.
    Error,
    /// `canceled` by the backend itself.
    Canceled,
}

/// Timing and outcome of a job, fixed when the job is started.
///
/// The status is computed from the wall clock: `queued` for `queued_secs` after the start,
/// then `running` for `running_secs` (progress rising linearly), then the outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    /// Seconds in `queued`.
    pub queued_secs: f64,
    /// Seconds in `running`.
    pub running_secs: f64,
    /// Final status.
    pub outcome: Outcome,
    /// Message of the error log entry when the outcome is `error`.
    pub error_message: Option<String>,
}

impl Default for JobPlan {
    fn default() -> Self {
        Self {
            queued_secs: 0.5,
            running_secs: 2.0,
            outcome: Outcome::Finished,
            error_message: None,
        }
    }
}

impl JobPlan {
    /// A plan with the given timing that finishes.
    pub fn finishing(queued_secs: f64, running_secs: f64) -> Self {
        Self {
            queued_secs,
            running_secs,
            ..Self::default()
        }
    }

    /// A plan with the given timing that fails with `message`.
    pub fn failing(queued_secs: f64, running_secs: f64, message: impl Into<String>) -> Self {
        Self {
            queued_secs,
            running_secs,
            outcome: Outcome::Error,
            error_message: Some(message.into()),
        }
    }
}

/// A plan for the jobs whose title or description contains `matches`, or whose id equals it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRule {
    /// Substring of title or description, or a job id.
    pub matches: String,
    /// The plan those jobs get when they start.
    pub plan: JobPlan,
}

impl PlanRule {
    /// A rule giving `plan` to the jobs matched by `matches`.
    pub fn new(matches: impl Into<String>, plan: JobPlan) -> Self {
        Self {
            matches: matches.into(),
            plan,
        }
    }
}

/// What one result file contains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssetSource {
    /// `size` deterministic pseudo-random bytes (a function of job id and file name); streamed,
    /// so large sizes cost no memory.
    Generated {
        /// Size in bytes.
        size: u64,
    },
    /// A valid single-band uint8 GeoTIFF in the UTM zone of the job's extent, 10 m pixels
    /// (coarser for large extents, at most 1024 pixels a side). The default for `openEO.tif`.
    GeoTiff,
    /// A valid single-band uint16 GeoTIFF in the UTM zone of the centre of the job's extent,
    /// pixels of `pixel` metres (coarser when more than 1024 a side would be needed), whose
    /// values are a function of each pixel's position in that zone's grid (nodata 0): files
    /// of neighbouring extents agree where they overlap, so a mosaic's pixels can be compared
    /// with the tiles'. Used by the mosaic tests; never a default.
    GroundTiff {
        /// Pixel size in metres (e.g. 100: a 20 km tile is about 200 × 200 pixels).
        pixel: f64,
    },
    /// A valid netCDF classic file (`t`, `y`, `x`; one byte variable `pv_farm`; CF grid
    /// mapping) on the same grid as [`AssetSource::GeoTiff`]. The default for `openEO.nc`.
    NetCdf,
    /// A valid GeoJSON FeatureCollection of a few polygons in the job's extent. The default for
    /// `vectorcube.geojson`.
    GeoJson,
    /// A small JSON document. The default for `result.json`.
    Json,
    /// The bytes of a file on disk (e.g. a GeoTIFF a test made with GDAL).
    File(PathBuf),
}

impl AssetSource {
    /// The default content of a result file.
    pub(crate) fn default_for(file_name: &str) -> Self {
        match file_name {
            "openEO.tif" => AssetSource::GeoTiff,
            "openEO.nc" => AssetSource::NetCdf,
            "vectorcube.geojson" => AssetSource::GeoJson,
            "result.json" => AssetSource::Json,
            _ => AssetSource::Generated { size: 64 * 1024 },
        }
    }
}
