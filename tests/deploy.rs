//! The deployment files against the code they deploy: every health check,
//! probe and command they give our image runs with the real binary (under
//! dash, the image's `sh`); every variable they set is one the binary
//! reads; every series the Grafana dashboard queries is one the binary
//! exports. (`scripts/validate-deploy.sh` checks the same files against the
//! compose and Kubernetes schemas.)

mod common;
mod deployment;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpa_ml_shared::config::KNOWN_VARS;

use common::{Mode, TestEnv};
use deployment::{CheckRun, Container, read};

/// Keys of every ConfigMap and Secret under `k8s/`, and of every
/// `configMapGenerator` / `secretGenerator` literal of a kustomization.
fn k8s_config_keys() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, doc) in deployment::k8s_documents() {
        match doc["kind"].as_str() {
            Some("ConfigMap") | Some("Secret") => {
                for field in ["data", "stringData"] {
                    for (k, _) in doc[field].as_mapping().into_iter().flatten() {
                        out.push((file.clone(), k.as_str().unwrap_or("").to_string()));
                    }
                }
            }
            Some("Kustomization") => {
                for generator in ["configMapGenerator", "secretGenerator"] {
                    for g in doc[generator].as_sequence().into_iter().flatten() {
                        for lit in g["literals"].as_sequence().into_iter().flatten() {
                            let lit = lit.as_str().unwrap_or("");
                            let key = lit.split('=').next().unwrap_or(lit);
                            out.push((file.clone(), key.to_string()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_variable_the_deployment_files_set_is_read_by_the_binary() {
    let image = deployment::dockerfile();
    let mut set: Vec<(String, String)> = image
        .env
        .keys()
        .map(|k| ("Dockerfile".to_string(), k.clone()))
        .collect();
    let mut containers = deployment::compose_containers(&image, "compose/docker-compose.yml");
    containers.extend(deployment::k8s_containers(&image));
    assert!(containers.len() >= 8, "{containers:#?}");
    for c in &containers {
        set.extend(c.env.keys().map(|k| (c.origin.clone(), k.clone())));
    }
    let config = k8s_config_keys();
    assert!(config.len() >= 8, "{config:?}");
    set.extend(config);
    for (origin, var) in set {
        assert!(
            KNOWN_VARS.contains(&var.as_str()),
            "{origin} sets {var}, which rpa-ml does not read"
        );
    }
}

/// `rpa_ml_…` names in a text (a dashboard, alert rules, a scaler's query).
fn series_named(text: &str) -> BTreeSet<String> {
    text.match_indices("rpa_ml_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_series_the_dashboard_alerts_and_autoscaler_query_is_exported() {
    let names = rpa_ml_shared::metrics::family_names();
    let families: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert!(families.len() >= 15, "{families:?}");
    let dashboard = read("compose/grafana/dashboards/rpa-ml.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert_eq!(parsed["uid"], "rpa-ml");
    let mut sources = vec![
        (
            "compose/grafana/dashboards/rpa-ml.json".to_string(),
            dashboard,
        ),
        ("compose/alerts.yml".to_string(), read("compose/alerts.yml")),
    ];
    // Queries of the autoscalers (KEDA triggers, HPA metrics) and any
    // other series a manifest names.
    for path in deployment::yaml_files(&deployment::root().join("k8s")) {
        let rel = path
            .strip_prefix(deployment::root())
            .expect("under root")
            .display()
            .to_string();
        sources.push((rel.clone(), read(&rel)));
    }
    let mut total = 0;
    for (file, text) in &sources {
        let queried = series_named(text);
        total += queried.len();
        for name in &queried {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
                .unwrap_or(name.as_str());
            assert!(
                families.contains(family),
                "{file} queries {name}, which is not exported; exported: {families:?}"
            );
        }
    }
    assert!(total >= 15, "{total} series named");
}

/// The image's working directory, where the files put the volumes.
const IMAGE_HOME: &str = "/var/lib/rpa-ml";

/// A container of the files, played on this machine: its absolute paths
/// under one root per file (volumes shared as the files share them), the
/// ports it names mapped to free ones, connection variables pointed at
/// this test's PostgreSQL, Redis and backend.
struct Played {
    c: Container,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    /// Port in the files → port here.
    ports: BTreeMap<u16, u16>,
    log: PathBuf,
}

fn play(te: &TestEnv, root: &Path, i: usize, c: &Container) -> Played {
    let root_s = root.display().to_string();
    let home = format!("{root_s}{IMAGE_HOME}");
    let rewrite = |s: &str| s.replace(IMAGE_HOME, &home);
    let argv: Vec<String> = c.argv.iter().map(|a| rewrite(a)).collect();
    let mut env: BTreeMap<String, String> = c
        .env
        .iter()
        .map(|(k, v)| {
            let v = if v.starts_with('/') && !v.starts_with(IMAGE_HOME) {
                format!("{root_s}{v}")
            } else {
                rewrite(v)
            };
            (k.clone(), v)
        })
        .collect();
    // Service names resolve only inside the deployment: the connections
    // the files set go to this test's servers instead.
    let ours = te.env();
    for var in ["ML_STORE_URL", "REDIS_URL", "ML_API_KEY"] {
        if env.contains_key(var) {
            let v = if var == "REDIS_URL" {
                te.redis_url.clone()
            } else {
                ours[var].clone()
            };
            env.insert(var.into(), v);
        }
    }
    if !env
        .get("DATABASE_URL")
        .is_some_and(|u| u.starts_with("sqlite:"))
    {
        env.insert("DATABASE_URL".into(), ours["DATABASE_URL"].clone());
    }
    env.insert("REDIS_QUEUE_PREFIX".into(), te.prefix.clone());
    let mut ports = BTreeMap::new();
    let api_port = env.get("ML_API_PORT").cloned().unwrap_or("8001".into());
    for (var, value) in [
        ("ML_API_PORT", Some(api_port)),
        (
            "WORKER_METRICS_PORT",
            env.get("WORKER_METRICS_PORT").cloned(),
        ),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let here = common::free_port();
            ports.insert(v.parse().expect("a port number"), here);
            env.insert(var.into(), here.to_string());
        }
    }
    std::fs::create_dir_all(&home).expect("image home");
    Played {
        c: c.clone(),
        argv,
        env,
        cwd: PathBuf::from(home),
        ports,
        log: te.dir.join(format!(
            "{i}-{}.log",
            c.argv.get(1).map_or("x", |s| s.as_str())
        )),
    }
}

/// The image's `sh` is dash and `rpa-ml` is on its PATH: the same here.
fn image_path(te: &TestEnv) -> String {
    let bin = te.dir.join("image-bin");
    if !bin.exists() {
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::os::unix::fs::symlink("/usr/bin/dash", bin.join("sh")).expect("sh → dash");
        std::os::unix::fs::symlink(common::bin(), bin.join("rpa-ml")).expect("rpa-ml");
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

fn command(te: &TestEnv, p: &Played, argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&p.cwd)
        .env_clear()
        .env("PATH", image_path(te))
        .envs(&p.env)
        .stdin(Stdio::null());
    cmd
}

/// Runs to the end (killed after `limit`): exit status and output.
fn run_to_end(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    cmd.stdout(out.reopen().expect("reopen"))
        .stderr(out.reopen().expect("reopen"));
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(out.path()).unwrap_or_default();
    (status, text)
}

/// The argv a check executes in its container (an httpGet probe is the
/// kubelet's GET, which the binary makes the same way).
fn check_argv(p: &Played, run: &CheckRun) -> Vec<String> {
    match run {
        CheckRun::Exec(argv) => argv
            .iter()
            .map(|a| a.replace(IMAGE_HOME, &p.cwd.display().to_string()))
            .collect(),
        CheckRun::HttpGet { port, path } => {
            let here = p.ports.get(port).unwrap_or_else(|| {
                panic!(
                    "{}: probe on port {port}, where the process does not listen (it listens on {:?})",
                    p.c.origin,
                    p.ports.keys().collect::<Vec<_>>()
                )
            });
            vec![
                common::bin().to_string(),
                "healthcheck".into(),
                "--url".into(),
                format!("http://127.0.0.1:{here}{path}"),
            ]
        }
    }
}

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Plays every container of one file: each check must fail while nothing
/// runs, the one-shot commands must succeed, then every check must pass
/// while the long-running commands keep running.
async fn exercise(source: &str, containers: Vec<Container>) {
    assert!(
        !containers.is_empty(),
        "{source}: no container of our image"
    );
    for c in &containers {
        let role = c.argv.get(1).map(String::as_str).unwrap_or("");
        if !c.one_shot && ["api", "worker", "standalone"].contains(&role) {
            assert!(
                !c.checks.is_empty(),
                "{}: {role} has no health check or probe",
                c.origin
            );
        }
    }
    let te = TestEnv::new(Mode::Scale).await;
    let root = te.dir.join("root");
    let played: Vec<Played> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| play(&te, &root, i, c))
        .collect();

    for p in &played {
        for check in &p.c.checks {
            let (code, out) = run_to_end(
                command(&te, p, &check_argv(p, &check.run)),
                Duration::from_secs(20),
            );
            assert!(
                code.is_some_and(|c| c != 0),
                "{}: {} passes with nothing running ({code:?}), so it tells nothing:\n{out}",
                p.c.origin,
                check.what
            );
        }
    }
    for p in played.iter().filter(|p| p.c.one_shot) {
        let mut cmd = command(&te, p, &p.argv);
        let log = std::fs::File::create(&p.log).expect("log");
        cmd.stdout(log.try_clone().expect("log")).stderr(log);
        let (code, _) = run_to_end(cmd, Duration::from_secs(180));
        assert_eq!(
            code,
            Some(0),
            "{}: {:?} failed:\n{}",
            p.c.origin,
            p.argv,
            tail(&p.log)
        );
    }
    let mut running = Running(Vec::new());
    let long: Vec<&Played> = played.iter().filter(|p| !p.c.one_shot).collect();
    for p in &long {
        let mut cmd = command(&te, p, &p.argv);
        let log = std::fs::File::create(&p.log).expect("log");
        cmd.stdout(log.try_clone().expect("log")).stderr(log);
        running.0.push(cmd.spawn().expect("spawn"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in &long {
        for check in &p.c.checks {
            let argv = check_argv(p, &check.run);
            loop {
                let (code, out) = run_to_end(command(&te, p, &argv), Duration::from_secs(20));
                if code == Some(0) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: {} {argv:?} never passed; last exit {code:?}:\n{out}\n--- its process:\n{}",
                    p.c.origin,
                    check.what,
                    tail(&p.log)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    for (p, child) in long.iter().zip(running.0.iter_mut()) {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "{}: {:?} exited:\n{}",
            p.c.origin,
            p.argv,
            tail(&p.log)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_images_health_check_passes_on_its_default_command() {
    let image = deployment::dockerfile();
    assert!(
        image.healthcheck.is_some(),
        "the Dockerfile has no HEALTHCHECK"
    );
    exercise("Dockerfile", vec![deployment::image_default(&image)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_compose_health_check_and_command_runs() {
    let image = deployment::dockerfile();
    let containers = deployment::compose_containers(&image, "compose/docker-compose.yml");
    exercise("compose/docker-compose.yml", containers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kubernetes_probe_and_command_runs() {
    let image = deployment::dockerfile();
    exercise("k8s/", deployment::k8s_containers(&image)).await;
}

#[test]
fn compose_profiles_and_networks_keep_the_stores_inside() {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("compose/docker-compose.yml")).expect("YAML");
    let services = doc["services"].as_mapping().expect("services");
    let mut by_profile: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().expect("name").to_string();
        let profiles: Vec<String> = svc["profiles"]
            .as_sequence()
            .map(|p| {
                p.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec!["(default)".to_string()]);
        for p in profiles {
            by_profile.entry(p).or_default().insert(name.clone());
        }
        let networks: BTreeSet<&str> = svc["networks"]
            .as_sequence()
            .map(|n| n.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        // Ports are published on `edge` only; what holds or reads the
        // stores stays on `internal`, which has no route out.
        if !svc["ports"].is_null() {
            assert!(
                networks.contains("edge"),
                "{name} publishes ports off the edge network"
            );
        }
        if ["redis", "postgres", "worker", "scheduler", "migrate"].contains(&name.as_str()) {
            assert_eq!(networks, BTreeSet::from(["internal"]), "{name}: networks");
            assert!(svc["ports"].is_null(), "{name} publishes a port");
        }
    }
    assert_eq!(
        doc["networks"]["internal"]["internal"].as_bool(),
        Some(true)
    );
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let expected = [
        (
            "(default)",
            set(&[
                "redis",
                "postgres",
                "demo-data",
                "migrate",
                "api",
                "worker",
                "scheduler",
            ]),
        ),
        ("monitoring", set(&["prometheus", "grafana"])),
        ("tracking", set(&["mlflow"])),
        ("tls", set(&["caddy"])),
        ("dev", set(&["dev"])),
    ];
    for (profile, names) in &expected {
        assert_eq!(by_profile.get(*profile), Some(names), "profile {profile}");
    }
    assert_eq!(by_profile.len(), expected.len(), "{by_profile:?}");
    // The files the add-ons mount are in the repository.
    for (_, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().unwrap_or("");
            if let Some(rel) = v.strip_prefix("./") {
                let local = rel.split(':').next().unwrap_or(rel);
                assert!(
                    deployment::root().join("compose").join(local).exists(),
                    "compose mounts ./{local}, which does not exist"
                );
            }
        }
    }
    assert!(read("compose/prometheus.yml").contains("/etc/prometheus/alerts.yml"));
}

/// The kubelet probes and Prometheus scrapes by the pod's address, which
/// no ALLOWED_HOSTS entry names: the process routes answer any host, the
/// others still check it.
#[tokio::test(flavor = "multi_thread")]
async fn probes_pass_when_allowed_hosts_names_only_the_public_name() {
    let mut te = TestEnv::new(Mode::Scale).await;
    te.spawn("api", &["api"], &[("ALLOWED_HOSTS", "rpa-ml.example.com")]);
    let base = te.base();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for path in ["/health", "/ready?models=false", "/metrics"] {
        loop {
            let out = Command::new(common::bin())
                .args(["healthcheck", "--url", &format!("{base}{path}")])
                .output()
                .expect("healthcheck");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                te.dump_logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let r = http
        .get(format!("{base}/api/v1/models"))
        .header("Authorization", format!("Bearer {}", common::KEY))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "host_not_allowed", "{body}");
    let r = http
        .get(format!("{base}/api/v1/models"))
        .header("Host", "rpa-ml.example.com")
        .header("Authorization", format!("Bearer {}", common::KEY))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
}

/// Every pod of ours runs as non-root on a read-only root filesystem, and
/// a predict worker gets the time to finish the jobs it holds: each is
/// bounded by PREDICTION_TIMEOUT.
#[test]
fn kubernetes_pods_are_locked_down_and_drain_in_time() {
    let docs = deployment::k8s_documents();
    let config: BTreeMap<String, String> = docs
        .iter()
        .filter(|(f, d)| f.starts_with("k8s/base/") && d["kind"].as_str() == Some("ConfigMap"))
        .flat_map(|(_, d)| {
            d["data"]
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap_or("").to_string(),
                        v.as_str().unwrap_or("").to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let prediction_timeout: u64 = config
        .get("PREDICTION_TIMEOUT")
        .map_or(30, |v| v.parse().expect("PREDICTION_TIMEOUT"));
    let mut pods = 0;
    for (file, doc) in &docs {
        if doc["kind"].as_str() != Some("Deployment") || !file.starts_with("k8s/base/") {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or("?");
        let pod = &doc["spec"]["template"]["spec"];
        pods += 1;
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{name}"
        );
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_sequence().into_iter().flatten() {
                let sc = &c["securityContext"];
                let cname = c["name"].as_str().unwrap_or("?");
                assert_eq!(
                    sc["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{name}/{cname}"
                );
                assert_eq!(
                    sc["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{name}/{cname}"
                );
            }
        }
        if name == "rpa-ml-worker-predict" {
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            assert!(
                grace >= 2 * prediction_timeout,
                "{name}: {grace} s of grace, but a held prediction job may run PREDICTION_TIMEOUT = {prediction_timeout} s"
            );
        }
        if name == "rpa-ml-api" {
            let c = &pod["containers"][0];
            assert_eq!(
                c["readinessProbe"]["httpGet"]["path"].as_str(),
                Some("/ready?models=false")
            );
            assert_eq!(
                c["livenessProbe"]["httpGet"]["path"].as_str(),
                Some("/health")
            );
        }
    }
    assert_eq!(pods, 4, "api, two kinds of worker, scheduler");
    // Artifacts come from the ML store: no volume shared between pods.
    for (file, doc) in &docs {
        assert_ne!(
            doc["kind"].as_str(),
            Some("PersistentVolumeClaim"),
            "{file}: workers need no shared volume"
        );
    }
}
