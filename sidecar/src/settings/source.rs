//! Where settings are read from: a small trait, so the sidecar reads the
//! command line over the environment and tests read a map — never the real
//! environment.

use std::collections::HashMap;

use clap::{Arg, ArgMatches, Command, FromArgMatches};

use super::SETTINGS;

/// Settings by their environment-variable name (`AIFLAGS_LISTEN`).
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// The first source that has a setting wins.
pub struct Layered<'a>(pub Vec<&'a dyn Source>);

impl Source for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find_map(|s| s.get(name))
    }
}

/// Settings given on the command line (`--listen ADDR`), one flag per entry
/// of [`SETTINGS`]; `--help` lists each with its variable and default.
#[derive(Clone, Debug, Default)]
pub struct Args(HashMap<String, String>);

impl Args {
    /// Adds one value by its variable name (tests, the demo).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Args {
        self.0.insert(name.to_string(), value.into());
        self
    }
}

impl Source for Args {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl FromArgMatches for Args {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = HashMap::new();
        for setting in SETTINGS {
            if let Ok(Some(value)) = matches.try_get_one::<String>(setting.flag) {
                values.insert(setting.env.to_string(), value.clone());
            }
        }
        Ok(Args(values))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Args::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for Args {
    fn augment_args(cmd: Command) -> Command {
        SETTINGS.iter().fold(cmd, |cmd, setting| {
            let default = setting
                .default
                .map_or(String::new(), |d| format!(" [default: {d}]"));
            cmd.arg(
                Arg::new(setting.flag)
                    .long(setting.flag)
                    .value_name(setting.value)
                    .help(format!("{} [env: {}]{default}", setting.help, setting.env)),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
