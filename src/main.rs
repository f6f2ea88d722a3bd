//! The `sightline` binary: the command line (the studio opens here once it exists).

use clap::Parser;

fn main() {
    let cli = sightline::cli::Cli::parse();
    match sightline::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sightline: {e:#}");
            std::process::exit(2);
        }
    }
}
