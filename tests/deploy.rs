//! The deployment files against the code they deploy: every variable they
//! set is one the binary reads, and every series the Grafana dashboard
//! queries is one the binary exports. (`scripts/validate-deploy.sh` checks
//! the same files against the compose and Kubernetes schemas.)

use std::collections::BTreeSet;
use std::path::Path;

use rpa_ml_shared::config::KNOWN_VARS;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `NAME:` keys and `name: NAME` entries that look like environment variables.
fn env_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        if t.starts_with('#') {
            continue;
        }
        let key = t.split(':').next().unwrap_or("").trim();
        let candidate = if key == "env" || key.starts_with("env") {
            // `env: [{name: X, value: ...}]`
            t.split("name:")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .unwrap_or("")
                .trim()
        } else {
            key
        };
        if candidate.len() > 2
            && candidate
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            out.insert(candidate.to_string());
        }
    }
    out
}

#[test]
fn every_variable_the_deployment_files_set_is_read_by_the_binary() {
    // Variables of the images beside ours, not of rpa-ml.
    let foreign = |v: &str| v.starts_with("POSTGRES_") || v.starts_with("GF_");
    for file in [
        "compose/docker-compose.yml",
        "k8s/configmap.yaml",
        "k8s/secret.example.yaml",
        "k8s/worker.yaml",
    ] {
        let names = env_names(&read(file));
        assert!(!names.is_empty(), "{file}: no variables found");
        for v in names {
            assert!(
                foreign(&v) || KNOWN_VARS.contains(&v.as_str()),
                "{file} sets {v}, which rpa-ml does not read"
            );
        }
    }
}

#[test]
fn every_series_the_dashboard_queries_is_exported() {
    let names = rpa_ml_shared::metrics::family_names();
    let families: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert!(families.len() >= 15, "{families:?}");
    let dashboard = read("compose/grafana/dashboards/rpa-ml.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert_eq!(parsed["uid"], "rpa-ml");
    let mut queried = BTreeSet::new();
    for (i, _) in dashboard.match_indices("rpa_ml_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        queried.insert(name);
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in &queried {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
            .unwrap_or(name.as_str());
        assert!(
            families.contains(family),
            "the dashboard queries {name}, which is not exported; exported: {families:?}"
        );
    }
}
