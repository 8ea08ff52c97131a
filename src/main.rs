//! The `sticky-canary` command line: one subcommand per module.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sticky_canary::{assign, check};

#[derive(Parser)]
#[command(name = "sticky-canary", version, about = "Sticky canary routing for Istio gateways (AKS Istio add-on)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Write the embedded gateway filter (.wasm) and print its SHA-256.
    Wasm {
        /// Where to write the module.
        #[arg(long)]
        out: PathBuf,
    },
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

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Check { config } => {
            let policy = check::load(&config)?;
            print!("{}", check::summary(&policy));
            println!("{}: valid", config.display());
            Ok(())
        }
        Command::Assign { config, host, keys } => {
            let policy = check::load(&config)?;
            let route = assign::pick_route(&policy, host.as_deref())?;
            let stdout = std::io::stdout().lock();
            let result = if keys.as_os_str() == "-" {
                assign::run(route, std::io::stdin().lock(), stdout)
            } else {
                let file = std::fs::File::open(&keys).map_err(|e| format!("{}: cannot read: {e}", keys.display()))?;
                assign::run(route, BufReader::new(file), stdout)
            };
            result.map_err(|e| format!("assign: {e}"))
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
    }
}
