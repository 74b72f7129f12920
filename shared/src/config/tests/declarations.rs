use std::collections::HashMap;
use std::path::Path;

use super::ok;
use crate::config::vars::{self, SECTIONS};
use crate::config::{Config, ConfigWarning, KNOWN_VARS, env_example, read_env};

/// `.env.example` must list every variable, and its values must be the defaults.
#[test]
fn env_example_lists_every_variable_with_its_default() {
    let example = include_str!("../../../../.env.example");
    let mut listed = HashMap::new();
    for line in example.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some((name, value)) = line.split_once('=')
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            let previous = listed.insert(name.to_owned(), value.to_owned());
            assert!(previous.is_none(), "{name} is listed twice");
        }
    }
    for var in KNOWN_VARS {
        assert!(listed.contains_key(*var), "{var} missing from .env.example");
    }
    for var in listed.keys() {
        assert!(
            KNOWN_VARS.contains(&var.as_str()),
            "{var} is not read by Config"
        );
    }
    listed.insert("DEBUG".to_owned(), "true".to_owned());
    let from_example = Config::from_vars(&listed).expect(".env.example values load");
    assert_eq!(format!("{from_example:?}"), format!("{:?}", ok(&[])));
}

/// The variable a test run sets to rewrite `.env.example` from the declarations.
const WRITE: &str = "RPA_ML_WRITE_ENV_EXAMPLE";

#[test]
fn env_example_file_is_generated_from_the_declarations() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env.example");
    let generated = env_example();
    if std::env::var_os(WRITE).is_some() {
        std::fs::write(&path, &generated).expect("writing .env.example");
    }
    let committed = std::fs::read_to_string(&path).expect("reading .env.example");
    if committed != generated {
        let (line, (in_file, declared)) = committed
            .lines()
            .chain(std::iter::repeat(""))
            .zip(generated.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .expect("texts that differ differ on some line");
        panic!(
            ".env.example differs from the declarations in shared/src/config/vars.rs \
             (line {}: file has {in_file:?}, declarations give {declared:?}); \
             edit the declarations, not the file, then regenerate it with\n    \
             {WRITE}=1 cargo test -p rpa-ml-shared config::tests::declarations::env_example_file",
            line + 1
        );
    }
}

/// A doc line that states a range must state the one the kind enforces, so
/// changing a bound without its doc fails here.
#[test]
fn every_doc_states_the_bounds_its_kind_enforces() {
    // These state a rule between variables instead, which implies the bound.
    // (`check_rules` enforces the first; nothing enforces the second yet.)
    let stated_as_a_rule = ["WORKER_DEAD_AFTER_SECS", "SCHEDULE_TICK_TTL_DAYS"];
    let docs: HashMap<&str, String> = SECTIONS
        .iter()
        .flat_map(|section| section.groups.iter().copied().flatten())
        .map(|var| (var.name, var.doc.concat()))
        .collect();
    let mut checked = 0;
    for (name, bounds) in vars::kind_bounds() {
        let doc = &docs[name];
        match bounds {
            Some(_) if stated_as_a_rule.contains(&name) => {
                assert!(doc.contains("(must "), "{name}: {doc}");
            }
            Some(bounds) => {
                assert!(
                    doc.contains(&format!("({bounds})")),
                    "{name}: the doc should say ({bounds}), as the kind checks: {doc}"
                );
                checked += 1;
            }
            None => {}
        }
    }
    assert!(checked >= 20, "only {checked} variables have stated bounds");
}

#[test]
fn the_table_and_the_struct_agree() {
    assert_eq!(vars::FIELDS.len(), KNOWN_VARS.len());
    let names: Vec<&str> = SECTIONS
        .iter()
        .flat_map(|section| section.groups.iter().copied().flatten())
        .map(|var| var.name)
        .collect();
    assert_eq!(names, KNOWN_VARS);
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a variable is declared twice");
}

/// `Debug` is written by hand (it redacts), so a new field could be left out of it.
#[test]
fn debug_output_shows_every_field() {
    // With a key, no value's Debug holds ": " (the empty key's does).
    let debug = format!("{:?}", ok(&[("ML_API_KEY", "k")]));
    for field in vars::FIELDS {
        assert!(
            debug.contains(&format!(" {field}: ")),
            "{field} missing from Config's Debug: {debug}"
        );
    }
    assert_eq!(debug.matches(": ").count(), vars::FIELDS.len(), "{debug}");
}

#[test]
fn typos_name_the_variable_they_meant() {
    for (typo, meant) in [
        ("ML_API_PROT", "ML_API_PORT"),
        ("ml_api_port", "ML_API_PORT"),
        ("MAX_WORKER", "MAX_WORKERS"),
        ("LOGLEVEL", "LOG_LEVEL"),
        ("DATABASE_URI", "DATABASE_URL"),
        ("MLFLOW_TRACKING_URL", "MLFLOW_TRACKING_URI"),
        ("REDIS_RESPONSE_TIMEOUT", "REDIS_RESPONSE_TIMEOUT_MS"),
        ("DEBG", "DEBUG"),
    ] {
        assert_eq!(vars::nearest_known(typo), Some(meant), "{typo}");
    }
    // Other programs' variables are not dressed up as typos of ours.
    for foreign in [
        "GRAFANA_ADMIN_PASSWORD",
        "RUST_LOG",
        "PATH",
        "POSTGRES_PASSWORD",
    ] {
        assert_eq!(vars::nearest_known(foreign), None, "{foreign}");
    }
}

#[test]
fn dotenv_entries_rpa_ml_does_not_read_are_warned_about() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "ML_API_PROT=9000\nMAX_TRIALS=7\nGRAFANA_ADMIN_PASSWORD=x\nML_API_PROT=9001\n",
    )
    .expect("writing .env");
    let (vars, warnings) = read_env(dotenvy::from_path_iter(&path)).expect("reads");
    assert_eq!(
        warnings,
        vec![
            ConfigWarning::UnknownVar {
                name: "ML_API_PROT".to_owned(),
                nearest: Some("ML_API_PORT"),
            },
            ConfigWarning::UnknownVar {
                name: "GRAFANA_ADMIN_PASSWORD".to_owned(),
                nearest: None,
            },
        ]
    );
    assert_eq!(warnings[0].var(), "ML_API_PROT");
    assert_eq!(
        warnings[0].to_string(),
        "ML_API_PROT is set in .env but rpa-ml reads no such variable; did you mean ML_API_PORT?"
    );
    assert_eq!(
        warnings[1].to_string(),
        "GRAFANA_ADMIN_PASSWORD is set in .env but rpa-ml reads no such variable; it is ignored"
    );
    // Passed on all the same; no variable reads it, so it changes nothing.
    assert_eq!(vars.get("ML_API_PROT").map(String::as_str), Some("9001"));

    let (_, none) = read_env(dotenvy::from_path_iter(dir.path().join("absent")))
        .expect("a missing .env is fine");
    assert!(none.is_empty(), "{none:?}");
}
