use std::process::ExitCode;

use xdpctl::commands::{self, Command};

fn main() -> ExitCode {
    let cli = commands::parse();
    xdpctl::sys::libbpf_log::install(cli.verbose);
    xdpctl::sys::locks::set_timeout(std::time::Duration::from_secs_f64(cli.lock_timeout));
    let result = match &cli.command {
        Command::Load(args) => commands::load::run(args),
        Command::Unload(args) => commands::unload::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Stats(args) => commands::stats::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Block(args) => commands::block::block(args),
        Command::Unblock(args) => commands::block::unblock(args),
        Command::Allow(args) => commands::allow::allow(args),
        Command::Disallow(args) => commands::allow::disallow(args),
        Command::List(args) => commands::list::run(args),
        Command::Ratelimit(args) => commands::ratelimit::run(args),
        Command::Apply(args) => commands::apply::run(args),
        Command::Diff(args) => commands::diff::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Top(args) => commands::top::run(args),
        Command::History(args) => commands::history::run(args),
        Command::Graph(args) => commands::graph::run(args),
        Command::Ports(args) => commands::ports::run(args),
        Command::Exporter(args) => commands::exporter::run(args),
        Command::Watch(args) => commands::watch::run(args),
        Command::Flood(args) => commands::flood::run(args),
        Command::Trace(args) => commands::trace::run(args),
        Command::Testenv(args) => commands::testenv::run(args),
        Command::Demo(args) => commands::demo::run(args),
    };
    result.unwrap_or_else(|err| {
        eprintln!("xdpctl: error: {err:#}");
        ExitCode::FAILURE
    })
}
