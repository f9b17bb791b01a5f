//! `verdict config`, and the settings list of `verdict serve --help`: every
//! setting with its environment variable, default and meaning, read from
//! docs/configuration.md (which `tests/docs.rs` holds to the code), and the
//! effective configuration with the origin of each value.

use std::io::Write as _;

use clap::Args;

use super::Exit;
use super::serve::{ServeArgs, config_sources, load_config};
use crate::config;

/// The configuration reference, compiled in.
const PAGE: &str = include_str!("../../docs/configuration.md");

/// One setting as the reference describes it.
struct Documented {
    name: String,
    default: String,
    meaning: String,
}

/// The rows of the reference's table, one per setting (a row naming
/// several settings gives each its own default when the defaults are
/// listed one per setting).
fn documented() -> Vec<Documented> {
    let mut out = Vec::new();
    for line in PAGE.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(names), Some(defaults), Some(meaning)) =
            (cells.get(1), cells.get(2), cells.get(3))
        else {
            continue;
        };
        let names: Vec<&str> = names
            .split('`')
            .enumerate()
            .filter(|(i, n)| i % 2 == 1 && !n.starts_with("--"))
            .map(|(_, n)| n)
            .collect();
        let defaults: Vec<&str> = defaults.split(", ").collect();
        for (i, name) in names.iter().enumerate() {
            let default = if defaults.len() == names.len() {
                defaults.get(i).copied().unwrap_or_default().to_owned()
            } else {
                defaults.join(", ")
            };
            out.push(Documented {
                name: (*name).to_owned(),
                default: default.replace('`', ""),
                meaning: meaning.replace('`', ""),
            });
        }
    }
    out
}

/// The settings list of `serve --help`.
pub(crate) fn help() -> String {
    let mut text = String::from(
        "Settings (each also VERDICT_<NAME> in the environment, or NAME in the --config file;\nflags first, then the environment, then the file, then the default):\n",
    );
    for d in documented() {
        text.push_str(&format!(
            "\n  {} (VERDICT_{}) [default: {}]\n      {}\n",
            d.name,
            d.name.to_ascii_uppercase(),
            d.default,
            d.meaning
        ));
    }
    text
}

/// Arguments of `verdict config`: those of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Run `verdict config`: check the configuration `serve` would run with and
/// print every setting's value and where it came from.
pub(crate) fn run(args: ConfigArgs) -> Exit {
    if let Err(errors) = load_config(&args.serve) {
        for e in errors {
            eprintln!("error: {e}");
        }
        return Exit::Usage;
    }
    let explicit = match config_sources(&args.serve) {
        Ok(sources) => config::explicit(&sources),
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let documented = documented();
    let mut out = std::io::stdout().lock();
    for name in config::SETTINGS {
        let line = match explicit.get(name) {
            Some((origin, value)) => writeln!(out, "{name} = {value}  ({origin})"),
            None => {
                let default = documented
                    .iter()
                    .find(|d| d.name == *name)
                    .map_or("?", |d| d.default.as_str());
                writeln!(out, "{name} = {default}  (default)")
            }
        };
        // A reader that went away (`| head`) ends the listing.
        if line.is_err() {
            break;
        }
    }
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_a_documented_default() {
        let documented = documented();
        for name in config::SETTINGS {
            let d = documented.iter().find(|d| d.name == *name);
            assert!(d.is_some_and(|d| !d.default.is_empty()), "{name}");
        }
        let shared = documented
            .iter()
            .find(|d| d.name == "max_context_keys")
            .unwrap();
        assert_eq!(shared.default, "64");
    }
}
