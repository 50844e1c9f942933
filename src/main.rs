//! `eodispatch`: parses the command line (clap) and wires it to the library; the
//! daemon is [`eodispatch::run`], the commands live in [`eodispatch::cli`].
//!
//! Exit codes: 0 success, 1 an error from the daemon or a failed check, 2 a usage
//! error (bad flags, invalid configuration, unreadable `--file`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use eodispatch::api::unit_jobs::MAX_LIMIT;
use eodispatch::cli::{self, commands, doctor, login, serve, submit, tasks, upscale};
use eodispatch::job::{Label, OutputFormat, Status};

/// Local dispatcher of Earth-observation processing jobs (openEO, OGC API Processes).
///
/// The daemon (`eodispatch serve`) serves a JSON API on 127.0.0.1:8421 that mirrors the
/// ESA APEx Dispatch API; the other commands are its clients. Configuration:
/// `~/.config/eodispatch/config.toml` and EODISPATCH_* environment variables
/// (EODISPATCH_LISTEN, EODISPATCH_STATE_DIR, EODISPATCH_RESULTS_DIR,
/// EODISPATCH_CONFIG_DIR, ...).
#[derive(Debug, Parser)]
#[command(name = "eodispatch", version, propagate_version = true)]
#[command(arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what the systemd user service starts)
    Serve {
        /// Address to listen on, overriding `listen` in the configuration
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Print the local API token (for curl, scripts, notebooks)
    Token,
    /// List jobs, newest first
    Jobs {
        /// Only jobs with this status
        #[arg(long, value_name = "STATUS", value_parser = commands::status_parser())]
        status: Option<Status>,
        /// At most this many jobs (default 100)
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
        limit: Option<u32>,
        /// Print the JSON array the daemon returns
        #[arg(long)]
        json: bool,
    },
    /// Show one job
    Show {
        /// Job id
        id: i64,
        /// Print the job as JSON
        #[arg(long)]
        json: bool,
    },
    /// Submit a job, from a JSON file or from flags
    Submit(Box<SubmitArgs>),
    /// Cancel a job on its backend (the record stays)
    Cancel {
        /// Job id
        id: i64,
        /// Print the canceled job as JSON
        #[arg(long)]
        json: bool,
    },
    /// Submit a failed or canceled job again, as a new attempt (never a finished one)
    Retry {
        /// Job id
        id: i64,
        /// Print the job as JSON
        #[arg(long)]
        json: bool,
    },
    /// Forget a job, canceling it first if it is active (result files stay)
    Delete {
        /// Job id
        id: i64,
    },
    /// Split an area into tiles and run a service on each tile, as one upscale task
    Upscale(Box<UpscaleArgs>),
    /// List upscale tasks, newest first
    Tasks {
        /// Print the JSON array the daemon returns
        #[arg(long)]
        json: bool,
    },
    /// Show one upscale task with its sub-jobs
    Task {
        /// Task id
        id: i64,
        /// Follow the task until it has ended and its results are delivered (exit code 0
        /// when every tile finished, 1 otherwise)
        #[arg(long)]
        wait: bool,
        /// Print the task as JSON
        #[arg(long)]
        json: bool,
    },
    /// Cancel every sub-job of an upscale task that has not ended (records stay)
    CancelTask {
        /// Task id
        id: i64,
        /// Print the task as JSON
        #[arg(long)]
        json: bool,
    },
    /// Submit the failed and canceled sub-jobs of an upscale task again (never a
    /// finished one)
    RetryTask {
        /// Task id
        id: i64,
        /// Follow the task until it has ended (as `task --wait`)
        #[arg(long)]
        wait: bool,
        /// Print the task as JSON
        #[arg(long)]
        json: bool,
    },
    /// Forget an upscale task and its sub-jobs, canceling active ones first (result
    /// files stay)
    DeleteTask {
        /// Task id
        id: i64,
    },
    /// Log in to a backend (device code by default); tokens go to the OS keyring
    #[command(after_help = "Examples:
  eodispatch login https://openeofed.dataspace.copernicus.eu
  eodispatch login https://openeofed.dataspace.copernicus.eu --browser
  printf %s \"$SECRET\" | eodispatch login URL --client-credentials --client-id ID")]
    Login {
        /// Backend URL
        url: String,
        /// Device code flow: shows a code to enter on a web page (default)
        #[arg(long, conflicts_with_all = ["browser", "client_credentials"])]
        device: bool,
        /// Browser flow: opens the provider's login page, which returns to the daemon
        #[arg(long, conflicts_with = "client_credentials")]
        browser: bool,
        /// Service account: the client secret is read from standard input
        #[arg(long, requires = "client_id")]
        client_credentials: bool,
        /// OAuth client id (required with --client-credentials)
        #[arg(long, value_name = "ID")]
        client_id: Option<String>,
        /// OIDC provider id (default: the backend's first)
        #[arg(long, value_name = "ID")]
        provider: Option<String>,
        /// Do not open a browser; only print the page to visit
        #[arg(long)]
        no_browser: bool,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
    /// Log out of a backend and remove its tokens from the keyring
    Logout {
        /// Backend URL
        url: String,
        /// Print the backend as JSON
        #[arg(long)]
        json: bool,
    },
    /// List backends with their state and login
    Backends {
        /// Print the JSON array the daemon returns
        #[arg(long)]
        json: bool,
    },
    /// Say where the daemon and its files are: the API URL, token file, results and state
    /// folders, config file (from the daemon's discovery file while it runs, else from
    /// the configuration)
    Paths {
        /// Print the facts as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check the installation and say how to fix what is broken
    Doctor {
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
}

/// `eodispatch submit --file job.json`, or
/// `eodispatch submit --endpoint URL --application URL --bbox W,S,E,N --time START/END`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  eodispatch submit --file job.json
  eodispatch submit --endpoint https://openeofed.dataspace.copernicus.eu \\
      --application https://example.org/udp/parcel_delineation.json \\
      --bbox 5.05,51.21,5.10,51.25 --time 2023-05-01/2023-09-30 --param max_cloud_cover=20")]
struct SubmitArgs {
    /// A complete POST /unit_jobs body as JSON (`-` reads standard input)
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "endpoint", "application", "namespace", "label", "title", "bbox", "crs", "time",
        "param", "format",
    ])]
    file: Option<PathBuf>,
    /// Backend URL, e.g. https://openeofed.dataspace.copernicus.eu
    #[arg(long, value_name = "URL", required_unless_present = "file")]
    endpoint: Option<String>,
    /// openEO: URL of the process (UDP) JSON; OGC API Processes: the process id
    #[arg(long, value_name = "URL", required_unless_present = "file")]
    application: Option<String>,
    /// OGC API Processes deployment namespace
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Kind of platform
    #[arg(long, value_name = "LABEL", value_parser = submit::label_parser(),
          default_value = "openeo")]
    label: Label,
    /// Job title (default: the application's file name)
    #[arg(long, value_name = "T")]
    title: Option<String>,
    /// Bounding box west,south,east,north (parameters.spatial_extent)
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true,
          value_parser = submit::parse_bbox, required_unless_present = "file")]
    bbox: Option<submit::Bbox>,
    /// EPSG code of the bounding box (default: WGS84 longitude/latitude)
    #[arg(long, value_name = "EPSG", value_parser = submit::parse_crs)]
    crs: Option<u32>,
    /// Time range START/END, e.g. 2023-05-01/2023-09-30 (parameters.temporal_extent)
    #[arg(long, value_name = "START/END", value_parser = submit::parse_time,
          required_unless_present = "file")]
    time: Option<submit::TimeRange>,
    /// Another parameter as name=JSON, e.g. max_cloud_cover=20 (repeatable)
    #[arg(long, value_name = "NAME=VALUE", value_parser = submit::parse_param)]
    param: Vec<submit::Param>,
    /// Output format
    #[arg(long, value_name = "FORMAT", value_parser = submit::format_parser(),
          default_value = "gtiff")]
    format: OutputFormat,
    /// Print the created job as JSON
    #[arg(long)]
    json: bool,
}

impl SubmitArgs {
    /// Where the job comes from; clap has made sure that either `--file` or the
    /// required flags are present.
    fn into_source(self) -> commands::JobSource {
        if let Some(file) = self.file {
            return commands::JobSource::File(file);
        }
        commands::JobSource::Flags(Box::new(submit::JobFlags {
            endpoint: self.endpoint.unwrap_or_default(),
            application: self.application.unwrap_or_default(),
            namespace: self.namespace,
            label: self.label,
            title: self.title,
            bbox: self.bbox.unwrap_or(submit::Bbox {
                west: 0.0,
                south: 0.0,
                east: 0.0,
                north: 0.0,
            }),
            crs: self.crs,
            time: self.time.unwrap_or(submit::TimeRange {
                start: None,
                end: None,
            }),
            params: self.param,
            format: self.format,
        }))
    }
}

/// `eodispatch upscale --service ID --bbox W,S,E,N --time START/END`, or with
/// `--endpoint URL --application URL` and `--area FILE.geojson`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  eodispatch upscale --service eurac_pv_farm_detection --bbox 16.2,48.1,16.5,48.3 \\
      --time 2023-05-01/2023-09-30 --wait
  eodispatch upscale --endpoint https://openeofed.dataspace.copernicus.eu \\
      --application https://example.org/udp/ndvi.json --area vienna.geojson --grid 20km \\
      --time 2023-05-01/2023-09-30 --param max_cloud_cover=20 --title \"NDVI Vienna\"")]
struct UpscaleArgs {
    /// A service of the daemon's catalogue by id (GET /services), e.g. eurac_pv_farm_detection
    #[arg(long, value_name = "ID", required_unless_present = "endpoint",
          conflicts_with_all = ["endpoint", "application", "namespace", "label"])]
    service: Option<String>,
    /// Backend URL, e.g. https://openeofed.dataspace.copernicus.eu
    #[arg(long, value_name = "URL", requires = "application")]
    endpoint: Option<String>,
    /// openEO: URL of the process (UDP) JSON; OGC API Processes: the process id
    #[arg(long, value_name = "URL", requires = "endpoint")]
    application: Option<String>,
    /// OGC API Processes deployment namespace
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Kind of platform (default openeo)
    #[arg(long, value_name = "LABEL", value_parser = submit::label_parser())]
    label: Option<Label>,
    /// The area: a GeoJSON file with one polygon (Polygon, Feature or FeatureCollection)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "bbox",
        conflicts_with = "bbox"
    )]
    area: Option<PathBuf>,
    /// The area as a bounding box west,south,east,north (WGS84)
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true,
          value_parser = submit::parse_bbox)]
    bbox: Option<submit::Bbox>,
    /// Tile size: 20km or 250km squares (in the UTM zone of the area's centre)
    #[arg(long, value_name = "GRID", default_value = "20km", value_parser = upscale::parse_grid)]
    grid: &'static str,
    /// The parameter each tile is given to
    #[arg(long, value_name = "NAME", default_value = upscale::DEFAULT_DIMENSION)]
    dimension: String,
    /// Time range START/END shared by every tile (parameters.temporal_extent)
    #[arg(long, value_name = "START/END", value_parser = submit::parse_time)]
    time: Option<submit::TimeRange>,
    /// Another parameter shared by every tile, as name=JSON (repeatable)
    #[arg(long, value_name = "NAME=VALUE", value_parser = submit::parse_param)]
    param: Vec<submit::Param>,
    /// Output format
    #[arg(long, value_name = "FORMAT", value_parser = submit::format_parser(),
          default_value = "gtiff")]
    format: OutputFormat,
    /// Task title (default: the service's title or the application's file name)
    #[arg(long, value_name = "T")]
    title: Option<String>,
    /// Follow the task until it has ended and its results are delivered, with a progress
    /// line (exit code 0 when every tile finished, 1 otherwise)
    #[arg(long)]
    wait: bool,
    /// Print the task as JSON
    #[arg(long)]
    json: bool,
}

impl UpscaleArgs {
    /// The task described by the flags; clap has made sure that a service and an area
    /// are given.
    fn into_flags(self) -> upscale::UpscaleFlags {
        let service = match self.service {
            Some(id) => upscale::ServiceChoice::Catalogue(id),
            None => upscale::ServiceChoice::Direct {
                endpoint: self.endpoint.unwrap_or_default(),
                application: self.application.unwrap_or_default(),
                namespace: self.namespace,
                label: self.label.unwrap_or_default(),
            },
        };
        let area = match (self.area, self.bbox) {
            (Some(file), _) => upscale::Area::File(file),
            (None, Some(b)) => upscale::Area::Bbox(b),
            (None, None) => upscale::Area::File(PathBuf::new()),
        };
        upscale::UpscaleFlags {
            service,
            area,
            grid: self.grid,
            dimension: self.dimension,
            time: self.time,
            params: self.param,
            format: self.format,
            title: self.title,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen } => serve::serve(listen).await,
        Command::Token => cli::finish(commands::token()),
        Command::Jobs {
            status,
            limit,
            json,
        } => cli::finish(
            commands::jobs(commands::JobsOptions {
                status,
                limit,
                json,
            })
            .await,
        ),
        Command::Show { id, json } => cli::finish(commands::show(id, json).await),
        Command::Submit(args) => {
            let json = args.json;
            cli::finish(commands::submit(args.into_source(), json).await)
        }
        Command::Cancel { id, json } => cli::finish(commands::cancel(id, json).await),
        Command::Retry { id, json } => cli::finish(commands::retry(id, json).await),
        Command::Delete { id } => cli::finish(commands::delete(id).await),
        Command::Upscale(args) => {
            let (wait, json) = (args.wait, args.json);
            cli::finish(tasks::upscale(args.into_flags(), wait, json).await)
        }
        Command::Tasks { json } => cli::finish(tasks::tasks(json).await),
        Command::Task { id, wait, json } => cli::finish(tasks::task(id, wait, json).await),
        Command::CancelTask { id, json } => cli::finish(tasks::cancel_task(id, json).await),
        Command::RetryTask { id, wait, json } => {
            cli::finish(tasks::retry_task(id, wait, json).await)
        }
        Command::DeleteTask { id } => cli::finish(tasks::delete_task(id).await),
        Command::Login {
            url,
            device: _,
            browser,
            client_credentials,
            client_id,
            provider,
            no_browser,
            json,
        } => cli::finish(
            login::login(login::LoginOptions {
                endpoint: url,
                flow: if client_credentials {
                    login::LoginFlow::ClientCredentials
                } else if browser {
                    login::LoginFlow::Browser
                } else {
                    login::LoginFlow::Device
                },
                provider,
                client_id,
                no_browser,
                json,
            })
            .await,
        ),
        Command::Logout { url, json } => cli::finish(login::logout(url, json).await),
        Command::Backends { json } => cli::finish(login::backends(json).await),
        Command::Paths { json } => cli::finish(commands::paths(json)),
        Command::Doctor { json } => doctor::doctor(json).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_needs_a_file_or_the_flags() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["eodispatch", "submit"], args].concat());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--file", "job.json"]).is_ok());
        assert!(parse(&["--file", "job.json", "--bbox", "1,2,3,4"]).is_err());
        let ok = parse(&[
            "--endpoint",
            "https://openeo.example.org",
            "--application",
            "https://x/y.json",
            "--bbox",
            "-5,40,5,50",
            "--time",
            "2023-05-01/2023-09-30",
            "--param",
            "a=1",
            "--param",
            "b=\"x\"",
            "--label",
            "ogc_api_process",
        ]);
        let Command::Submit(args) = ok.unwrap().command else {
            panic!("not submit")
        };
        assert_eq!(args.param.len(), 2);
        assert_eq!(args.bbox.unwrap().west, -5.0);
        assert_eq!(args.label, Label::OgcApiProcess);
        assert_eq!(args.format, OutputFormat::Gtiff);
        let e = parse(&[
            "--endpoint",
            "https://e",
            "--application",
            "a",
            "--bbox",
            "1,2,3",
            "--time",
            "a/b",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("4 comma-separated numbers"), "{e}");
    }

    #[test]
    fn upscale_needs_a_service_and_an_area() {
        let parse =
            |args: &[&str]| Cli::try_parse_from([&["eodispatch", "upscale"], args].concat());
        assert!(parse(&["--service", "x"]).is_err(), "no area");
        assert!(parse(&["--bbox", "1,2,3,4"]).is_err(), "no service");
        assert!(parse(&["--service", "x", "--bbox", "1,2,3,4", "--area", "a.geojson"]).is_err());
        assert!(parse(&[
            "--service",
            "x",
            "--endpoint",
            "https://e",
            "--bbox",
            "1,2,3,4"
        ])
        .is_err());
        assert!(
            parse(&["--endpoint", "https://e", "--bbox", "1,2,3,4"]).is_err(),
            "no application"
        );
        assert!(parse(&["--service", "x", "--bbox", "1,2,3,4", "--grid", "10km"]).is_err());
        let ok = parse(&[
            "--endpoint",
            "https://e",
            "--application",
            "https://a/pv.json",
            "--area",
            "a.geojson",
            "--grid",
            "250km",
            "--param",
            "k=1",
            "--wait",
        ])
        .unwrap();
        let Command::Upscale(args) = ok.command else {
            panic!("not upscale")
        };
        assert!(args.wait);
        let flags = args.into_flags();
        assert_eq!(flags.grid, "250x250km");
        assert_eq!(flags.dimension, "spatial_extent");
        assert_eq!(flags.area, upscale::Area::File(PathBuf::from("a.geojson")));
        assert!(matches!(
            flags.service,
            upscale::ServiceChoice::Direct {
                label: Label::Openeo,
                ..
            }
        ));
        let ok = parse(&["--service", "pv", "--bbox", "-1,2,3,4"]).unwrap();
        let Command::Upscale(args) = ok.command else {
            panic!("not upscale")
        };
        assert_eq!(args.grid, "20x20km");
        assert!(matches!(
            args.into_flags().service,
            upscale::ServiceChoice::Catalogue(id) if id == "pv"
        ));
        for task_command in ["task", "cancel-task", "retry-task", "delete-task"] {
            assert!(Cli::try_parse_from(["eodispatch", task_command, "3"]).is_ok());
            assert!(Cli::try_parse_from(["eodispatch", task_command, "x"]).is_err());
        }
    }

    #[test]
    fn status_and_format_are_checked() {
        assert!(Cli::try_parse_from(["eodispatch", "jobs", "--status", "running"]).is_ok());
        let e = Cli::try_parse_from(["eodispatch", "jobs", "--status", "done"]).unwrap_err();
        assert!(e.to_string().contains("finished"), "{e}");
        assert!(Cli::try_parse_from(["eodispatch", "show", "x"]).is_err());
    }
}
