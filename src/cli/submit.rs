//! `eodispatch submit`: the job body, either read from a file (a full `POST /unit_jobs`
//! body) or built from flags.
//!
//! The flag parsers here check *syntax* only (four numbers in `--bbox`, `START/END` in
//! `--time`, `name=JSON` in `--param`) and say what they expected; whether the values
//! make sense (west < east, real dates, a reachable endpoint) is the daemon's call, and
//! its problem answer is printed as it is.

use std::io::Read;
use std::path::Path;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde_json::{json, Map, Number, Value};

use crate::job::{Label, OutputFormat};

use super::CliError;

/// Title used when neither `--title` nor the application gives one.
pub const FALLBACK_TITLE: &str = "eodispatch job";

/// `--bbox W,S,E,N`: the four edges, in the order openEO names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// Western edge (minimum x).
    pub west: f64,
    /// Southern edge (minimum y).
    pub south: f64,
    /// Eastern edge (maximum x).
    pub east: f64,
    /// Northern edge (maximum y).
    pub north: f64,
}

/// Parses `--bbox W,S,E,N`: four finite numbers separated by commas (spaces allowed).
pub fn parse_bbox(s: &str) -> Result<Bbox, String> {
    const SHAPE: &str = "the bounding box needs 4 comma-separated numbers W,S,E,N \
                         (west, south, east, north), e.g. 5.05,51.21,5.10,51.25";
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 4 {
        return Err(format!("{SHAPE}; got {} value(s)", parts.len()));
    }
    let mut edges = [0.0; 4];
    for (i, (part, name)) in parts
        .iter()
        .zip(["west", "south", "east", "north"])
        .enumerate()
    {
        match part.parse::<f64>() {
            Ok(v) if v.is_finite() => edges[i] = v,
            _ => return Err(format!("{SHAPE}; {name} {part:?} is not a number")),
        }
    }
    let [west, south, east, north] = edges;
    Ok(Bbox {
        west,
        south,
        east,
        north,
    })
}

/// Parses `--crs`: an EPSG code, as `32631` or `EPSG:32631`.
pub fn parse_crs(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = match t.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("epsg:") => &t[5..],
        _ => t,
    };
    match digits.parse::<u32>() {
        Ok(code) if !digits.starts_with('+') => Ok(code),
        _ => Err(format!(
            "{s:?} is not an EPSG code; give one such as 4326, 32631 or EPSG:32631"
        )),
    }
}

/// `--time START/END`: the two ends of the temporal extent as given (`..` for an open
/// end becomes `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, inclusive; `None` for an open start.
    pub start: Option<String>,
    /// End; `None` for an open end.
    pub end: Option<String>,
}

/// Parses `--time START/END` (e.g. `2023-05-01/2023-09-30`; `..` for an open end).
/// The dates themselves are checked by the daemon.
pub fn parse_time(s: &str) -> Result<TimeRange, String> {
    const SHAPE: &str =
        "the time range needs START/END, e.g. 2023-05-01/2023-09-30 (`..` for an open end)";
    let Some((start, end)) = s.split_once('/') else {
        return Err(format!("{SHAPE}; there is no '/' in {s:?}"));
    };
    if end.contains('/') {
        return Err(format!("{SHAPE}; {s:?} has more than one '/'"));
    }
    let side = |v: &str, name: &str| -> Result<Option<String>, String> {
        match v.trim() {
            "" => Err(format!("{SHAPE}; the {name} is empty")),
            ".." => Ok(None),
            t if t.chars().any(char::is_whitespace) => {
                Err(format!("{SHAPE}; the {name} {t:?} contains spaces"))
            }
            t => Ok(Some(t.to_string())),
        }
    };
    Ok(TimeRange {
        start: side(start, "start")?,
        end: side(end, "end")?,
    })
}

/// `--param name=JSONVALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// Parses `--param name=VALUE`. The value is JSON (`20`, `true`, `[1,2]`,
/// `{"a":1}`, `"text"`); a value that is not JSON and does not look like it was meant
/// to be (it does not start with `{`, `[` or `"`) is sent as a string, so that
/// `--param method=median` works.
pub fn parse_param(s: &str) -> Result<Param, String> {
    let Some((name, raw)) = s.split_once('=') else {
        return Err(format!(
            "a parameter needs name=VALUE with a JSON value, e.g. max_cloud_cover=20; \
             there is no '=' in {s:?}"
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("the parameter name before '=' is empty in {s:?}"));
    }
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(v) => v,
        Err(e) => {
            let t = raw.trim_start();
            if t.starts_with(['{', '[', '"']) {
                return Err(format!("the value of {name} is not valid JSON: {e}"));
            }
            Value::String(raw.to_string())
        }
    };
    Ok(Param {
        name: name.to_string(),
        value,
    })
}

/// Value parser of `--label`: lists the labels in help and errors.
pub fn label_parser() -> impl TypedValueParser<Value = Label> {
    PossibleValuesParser::new(Label::ALL.map(Label::as_str))
        .try_map(|s| Label::parse(&s).ok_or_else(|| format!("unknown label {s:?}")))
}

/// Value parser of `--format`: lists the formats in help and errors.
pub fn format_parser() -> impl TypedValueParser<Value = OutputFormat> {
    PossibleValuesParser::new(OutputFormat::ALL.map(OutputFormat::as_str))
        .try_map(|s| OutputFormat::parse(&s).ok_or_else(|| format!("unknown format {s:?}")))
}

/// The title derived from an application: the file name of a UDP URL without its
/// extension (`https://…/ndvi_timeseries.json` → `ndvi_timeseries`), or an OGC
/// process id as it is.
pub fn default_title(application: &str) -> String {
    let no_query = application
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    let file = no_query.rsplit('/').next().unwrap_or_default();
    let stem = match file.rsplit_once('.') {
        Some((stem, _ext)) if !stem.is_empty() => stem,
        _ => file,
    };
    let stem = stem.trim();
    if stem.is_empty() || stem.contains(':') {
        FALLBACK_TITLE.to_string()
    } else {
        stem.to_string()
    }
}

/// A job described by flags.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFlags {
    /// `--endpoint`: backend URL.
    pub endpoint: String,
    /// `--application`: UDP URL or process id.
    pub application: String,
    /// `--namespace`: OGC deployment namespace.
    pub namespace: Option<String>,
    /// `--label`.
    pub label: Label,
    /// `--title`; derived from the application when absent.
    pub title: Option<String>,
    /// `--bbox`.
    pub bbox: Bbox,
    /// `--crs` of the bounding box (EPSG code).
    pub crs: Option<u32>,
    /// `--time`.
    pub time: TimeRange,
    /// `--param`, in the order given.
    pub params: Vec<Param>,
    /// `--format`.
    pub format: OutputFormat,
}

/// A finite number as JSON, an integer when it is one (`5`, not `5.0`).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

impl JobFlags {
    /// The `POST /unit_jobs` body. Fails when a `--param` repeats a name or sets
    /// `spatial_extent` / `temporal_extent`, which `--bbox` and `--time` own.
    pub fn to_body(&self) -> Result<Value, String> {
        let mut bbox = Map::new();
        bbox.insert("west".into(), number(self.bbox.west));
        bbox.insert("south".into(), number(self.bbox.south));
        bbox.insert("east".into(), number(self.bbox.east));
        bbox.insert("north".into(), number(self.bbox.north));
        if let Some(crs) = self.crs {
            bbox.insert("crs".into(), Value::from(crs));
        }
        let mut parameters = Map::new();
        parameters.insert("spatial_extent".into(), Value::Object(bbox));
        parameters.insert(
            "temporal_extent".into(),
            json!([self.time.start, self.time.end]),
        );
        for p in &self.params {
            match p.name.as_str() {
                "spatial_extent" => {
                    return Err("--param spatial_extent: the bounding box is set by --bbox".into())
                }
                "temporal_extent" => {
                    return Err("--param temporal_extent: the time range is set by --time".into())
                }
                _ => {}
            }
            if parameters.insert(p.name.clone(), p.value.clone()).is_some() {
                return Err(format!("--param {} is given more than once", p.name));
            }
        }
        let mut service = Map::new();
        service.insert("endpoint".into(), Value::from(self.endpoint.clone()));
        service.insert("application".into(), Value::from(self.application.clone()));
        if let Some(ns) = &self.namespace {
            service.insert("namespace".into(), Value::from(ns.clone()));
        }
        let title = self
            .title
            .clone()
            .unwrap_or_else(|| default_title(&self.application));
        Ok(json!({
            "title": title,
            "label": self.label.as_str(),
            "service": service,
            "parameters": parameters,
            "format": self.format.as_str(),
        }))
    }
}

/// Reads a job body from `path` (`-` for standard input) and parses it as JSON. The
/// content is left for the daemon to judge.
pub fn read_job_file(path: &Path) -> Result<Value, CliError> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            CliError::Input(format!("cannot read the job from standard input: {e}"))
        })?;
        ("standard input".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    if text.trim().is_empty() {
        return Err(CliError::Input(format!(
            "{name} is empty; it should hold a job as JSON (title, label, service, parameters, format)"
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{name} is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_needs_four_numbers() {
        assert_eq!(
            parse_bbox("5.05, 51.21,5.1,51.25").unwrap(),
            Bbox {
                west: 5.05,
                south: 51.21,
                east: 5.1,
                north: 51.25
            }
        );
        assert_eq!(parse_bbox("-5,-40,5e0,40").unwrap().west, -5.0);
        let e = parse_bbox("1,2,3").unwrap_err();
        assert!(
            e.contains("4 comma-separated numbers") && e.contains("got 3"),
            "{e}"
        );
        let e = parse_bbox("1,2,x,4").unwrap_err();
        assert!(e.contains("east \"x\" is not a number"), "{e}");
        assert!(parse_bbox("1,2,inf,4").is_err());
        assert!(parse_bbox("1,2,NaN,4").is_err());
        assert!(parse_bbox("1,2,,4").is_err());
        // Semantics are the daemon's: west > east passes here.
        assert!(parse_bbox("10,50,5,51").is_ok());
    }

    #[test]
    fn crs_is_an_epsg_code() {
        assert_eq!(parse_crs("4326"), Ok(4326));
        assert_eq!(parse_crs("EPSG:32631"), Ok(32631));
        assert_eq!(parse_crs("epsg:3035"), Ok(3035));
        assert!(parse_crs("WGS84").unwrap_err().contains("not an EPSG code"));
        assert!(parse_crs("+4326").is_err());
        assert!(parse_crs("EPSG:").is_err());
    }

    #[test]
    fn time_needs_start_and_end() {
        assert_eq!(
            parse_time("2023-05-01/2023-09-30").unwrap(),
            TimeRange {
                start: Some("2023-05-01".into()),
                end: Some("2023-09-30".into())
            }
        );
        assert_eq!(parse_time("2023-05-01/..").unwrap().end, None);
        assert!(parse_time("2023-05-01").unwrap_err().contains("no '/'"));
        assert!(parse_time("2023-05-01/")
            .unwrap_err()
            .contains("end is empty"));
        assert!(parse_time("/2023-05-01")
            .unwrap_err()
            .contains("start is empty"));
        assert!(parse_time("a/b/c").unwrap_err().contains("more than one"));
        assert!(parse_time("2023-05-01 x/2023-06-01").is_err());
    }

    #[test]
    fn params_are_json_or_plain_strings() {
        let p = |s: &str| parse_param(s).map(|p| (p.name, p.value));
        assert_eq!(
            p("max_cloud_cover=20"),
            Ok(("max_cloud_cover".into(), json!(20)))
        );
        assert_eq!(p("flag=true"), Ok(("flag".into(), json!(true))));
        assert_eq!(
            p("bands=[\"B04\",\"B08\"]"),
            Ok(("bands".into(), json!(["B04", "B08"])))
        );
        assert_eq!(p("method=median"), Ok(("method".into(), json!("median"))));
        assert_eq!(p("expr=a=b"), Ok(("expr".into(), json!("a=b"))));
        assert_eq!(p("empty="), Ok(("empty".into(), json!(""))));
        assert!(p("noequals").unwrap_err().contains("no '='"));
        assert!(p("=5").unwrap_err().contains("name"));
        assert!(p("obj={\"a\":").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn titles_come_from_the_application() {
        assert_eq!(
            default_title("https://raw.githubusercontent.com/x/y/main/udp/ndvi_timeseries.json"),
            "ndvi_timeseries"
        );
        assert_eq!(
            default_title("https://example.org/udp/bap.json?ref=main#x"),
            "bap"
        );
        assert_eq!(
            default_title("https://example.org/processes/worldcereal/"),
            "worldcereal"
        );
        assert_eq!(default_title("ndvi-process"), "ndvi-process");
        assert_eq!(default_title("https://"), FALLBACK_TITLE);
        assert_eq!(default_title(""), FALLBACK_TITLE);
    }

    fn flags() -> JobFlags {
        JobFlags {
            endpoint: "https://openeo.example.org".into(),
            application: "https://example.org/udp/ndvi.json".into(),
            namespace: None,
            label: Label::Openeo,
            title: None,
            bbox: parse_bbox("5,51,5.1,51.1").unwrap(),
            crs: None,
            time: parse_time("2023-05-01/2023-09-30").unwrap(),
            params: vec![parse_param("max_cloud_cover=20").unwrap()],
            format: OutputFormat::Gtiff,
        }
    }

    #[test]
    fn flags_make_a_job_body() {
        let body = flags().to_body().unwrap();
        assert_eq!(
            body,
            json!({
                "title": "ndvi",
                "label": "openeo",
                "service": {"endpoint": "https://openeo.example.org",
                            "application": "https://example.org/udp/ndvi.json"},
                "parameters": {
                    "spatial_extent": {"west": 5, "south": 51, "east": 5.1, "north": 51.1},
                    "temporal_extent": ["2023-05-01", "2023-09-30"],
                    "max_cloud_cover": 20
                },
                "format": "gtiff"
            })
        );
        let mut f = flags();
        f.namespace = Some("ns".into());
        f.crs = Some(32631);
        f.title = Some("My job".into());
        f.label = Label::OgcApiProcess;
        f.format = OutputFormat::Netcdf;
        f.time.end = None;
        let body = f.to_body().unwrap();
        assert_eq!(body["title"], "My job");
        assert_eq!(body["label"], "ogc_api_process");
        assert_eq!(body["format"], "netcdf");
        assert_eq!(body["service"]["namespace"], "ns");
        assert_eq!(body["parameters"]["spatial_extent"]["crs"], 32631);
        assert_eq!(
            body["parameters"]["temporal_extent"],
            json!(["2023-05-01", null])
        );
    }

    #[test]
    fn params_may_not_clash() {
        let mut f = flags();
        f.params.push(parse_param("max_cloud_cover=30").unwrap());
        assert!(f.to_body().unwrap_err().contains("more than once"));
        let mut f = flags();
        f.params = vec![parse_param("spatial_extent={}").unwrap()];
        assert!(f.to_body().unwrap_err().contains("--bbox"));
        let mut f = flags();
        f.params = vec![parse_param("temporal_extent=[]").unwrap()];
        assert!(f.to_body().unwrap_err().contains("--time"));
    }

    #[test]
    fn job_files_must_be_json() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("job.json");
        std::fs::write(&good, r#"{"title": "t"}"#).unwrap();
        assert_eq!(read_job_file(&good).unwrap(), json!({"title": "t"}));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"title\": ").unwrap();
        let e = read_job_file(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.json is not valid JSON"), "{e}");
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(read_job_file(&empty)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        let e = read_job_file(&dir.path().join("missing.json")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
