//! `respool-operator`: `crd` prints the RespoolProfile CRD, `run` (the
//! default) runs the controller.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use respool_operator::crd::RespoolProfile;

/// Sizes Kubernetes workloads from what respool learned (the RespoolProfile CRD).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the RespoolProfile CustomResourceDefinition (YAML).
    Crd {
        /// JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Runs the controller (the default), with the in-cluster service
    /// account or, outside a cluster, the kubeconfig (KUBECONFIG,
    /// ~/.kube/config). Logs at RUST_LOG's level (default info).
    Run,
}

fn main() -> ExitCode {
    match Args::parse().command.unwrap_or(Command::Run) {
        Command::Crd { json } => match crd_text(json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("respool-operator: cannot write the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run => run(),
    }
}

fn crd_text(json: bool) -> Result<String, String> {
    if json {
        serde_json::to_string_pretty(&RespoolProfile::crd())
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    } else {
        respool_operator::crd::crd_yaml().map_err(|e| e.to_string())
    }
}

fn run() -> ExitCode {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt().with_max_level(level).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("respool-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "respool-operator: no Kubernetes configuration: {e} \
                     (in a pod: its service account; outside: KUBECONFIG or ~/.kube/config)"
                );
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("respool-operator watching RespoolProfiles in all namespaces");
        respool_operator::controller::run(client).await;
        ExitCode::SUCCESS
    })
}
