//! `values`: what each variable accepts and refuses, and the messages.
//! `declarations`: what is derived from the declarations (`.env.example`,
//! the unknown-variable warning) and that the docs agree with the kinds.

use std::collections::HashMap;

use super::{Config, ConfigError};

mod declarations;
mod values;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// DEBUG=true so tests that are not about the key need not set one.
fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut map = vars(&[("DEBUG", "true")]);
    map.extend(vars(pairs));
    Config::from_vars(&map)
}

fn ok(pairs: &[(&str, &str)]) -> Config {
    match load(pairs) {
        Ok(config) => config,
        Err(e) => panic!("expected {pairs:?} to load, got {e}"),
    }
}

fn err(pairs: &[(&str, &str)]) -> (&'static str, String) {
    match load(pairs) {
        Ok(config) => panic!("expected {pairs:?} to fail, got {config:?}"),
        Err(ConfigError::Invalid { var, message }) => (var, message),
    }
}
