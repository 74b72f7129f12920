//! The deployment files read as a container runtime reads them: for each
//! container of our image, what it runs, with which environment, and which
//! health checks and probes it gets. Used by `tests/deploy.rs` to execute
//! them with the real binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// The image name the deployment files give our image.
pub const IMAGE: &str = "rpa-ml";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the Dockerfile's final stage gives every container of the image.
#[derive(Debug, Clone)]
pub struct Image {
    pub env: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: String,
    /// `HEALTHCHECK CMD …` as the runtime executes it; None for `NONE` or absent.
    pub healthcheck: Option<Vec<String>>,
}

/// One container of our image as a deployment file declares it.
#[derive(Debug, Clone)]
pub struct Container {
    /// Where it comes from, for messages: "compose/docker-compose.yml: api".
    pub origin: String,
    /// The process the container runs (entrypoint and command joined).
    pub argv: Vec<String>,
    /// The image's ENV overlaid with what the file sets.
    pub env: BTreeMap<String, String>,
    /// Runs to completion before the others start (migrations, demo data).
    pub one_shot: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone)]
pub struct Check {
    /// "healthcheck", "readinessProbe", …
    pub what: String,
    pub run: CheckRun,
}

#[derive(Debug, Clone)]
pub enum CheckRun {
    /// Executed in the container, no shell unless the argv names one.
    Exec(Vec<String>),
    /// The kubelet's GET on the container's port.
    HttpGet { port: u16, path: String },
}

/// Splits a JSON-array instruction argument (`["a", "b"]`); None for the
/// shell form.
fn json_array(text: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(text.trim()).ok()
}

pub fn dockerfile() -> Image {
    let text = read("Dockerfile");
    // Join continuation lines, then keep the last stage's instructions.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("Dockerfile has a FROM");
    let mut image = Image {
        env: BTreeMap::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        workdir: "/".into(),
        healthcheck: None,
    };
    for line in &lines[last_from..] {
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instr {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV in the k=v form");
                    image.env.insert(k.into(), v.trim_matches('"').into());
                }
            }
            "WORKDIR" => image.workdir = rest.trim().into(),
            "ENTRYPOINT" => image.entrypoint = json_array(rest).expect("ENTRYPOINT in exec form"),
            "CMD" => image.cmd = json_array(rest).expect("CMD in exec form"),
            "HEALTHCHECK" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words.first() == Some(&"NONE") {
                    image.healthcheck = None;
                    continue;
                }
                let (_, cmd) = rest
                    .split_once(" CMD ")
                    .or_else(|| rest.strip_prefix("CMD ").map(|c| ("", c)))
                    .expect("HEALTHCHECK … CMD …");
                image.healthcheck = Some(json_array(cmd).unwrap_or_else(|| {
                    vec!["/bin/sh".into(), "-c".into(), cmd.trim().to_string()]
                }));
            }
            _ => {}
        }
    }
    image
}

/// The container the image runs when given no command.
pub fn image_default(image: &Image) -> Container {
    let mut argv = image.entrypoint.clone();
    argv.extend(image.cmd.iter().cloned());
    Container {
        origin: "Dockerfile (default command)".into(),
        argv,
        env: image.env.clone(),
        one_shot: false,
        checks: image
            .healthcheck
            .iter()
            .map(|h| Check {
                what: "HEALTHCHECK".into(),
                run: CheckRun::Exec(h.clone()),
            })
            .collect(),
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Sequence(s) => Some(
            s.iter()
                .map(|x| scalar(x).expect("a list of strings"))
                .collect(),
        ),
        _ => None,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `${X:-default}` → default, `${X:?message}` / `${X}` → "" (the test
/// supplies what must be set): compose's interpolation with an empty
/// environment.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closed ${") + i;
        let inner = &rest[i + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every service of the compose file that runs our image.
pub fn compose_containers(image: &Image, file: &str) -> Vec<Container> {
    let mut doc: Value = serde_yaml_ng::from_str(&read(file)).expect("compose file is YAML");
    doc.apply_merge().expect("compose merge keys");
    let services = doc["services"].as_mapping().expect("services");
    // Services others wait for with `service_completed_successfully`.
    let mut awaited = Vec::new();
    for (_, svc) in services {
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (name, cond) in deps {
                if cond["condition"].as_str() == Some("service_completed_successfully") {
                    awaited.push(name.as_str().expect("service name").to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().expect("service name");
        let ours = svc["image"]
            .as_str()
            .is_some_and(|i| i.split(':').next() == Some(IMAGE));
        if !ours {
            continue;
        }
        let origin = format!("{file}: {name}");
        let entrypoint = match &svc["entrypoint"] {
            Value::Null => image.entrypoint.clone(),
            v => strings(v).unwrap_or_else(|| panic!("{origin}: entrypoint as a list")),
        };
        let command = match &svc["command"] {
            Value::Null if svc["entrypoint"].is_null() => image.cmd.clone(),
            Value::Null => Vec::new(),
            v => strings(v).unwrap_or_else(|| panic!("{origin}: command as a list")),
        };
        let mut env = image.env.clone();
        match &svc["environment"] {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().expect("variable name");
                    let v = scalar(v).unwrap_or_default();
                    env.insert(k.to_string(), interpolate(&v));
                }
            }
            _ => panic!("{origin}: environment as a mapping"),
        }
        let hc = &svc["healthcheck"];
        let check = if hc["disable"].as_bool() == Some(true) {
            None
        } else if hc["test"].is_null() {
            image.healthcheck.clone()
        } else {
            match &hc["test"] {
                Value::String(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
                v => {
                    let t = strings(v).expect("healthcheck test as a list");
                    match t.first().map(String::as_str) {
                        Some("CMD") => Some(t[1..].to_vec()),
                        Some("CMD-SHELL") => {
                            Some(vec!["/bin/sh".into(), "-c".into(), t[1..].join(" ")])
                        }
                        Some("NONE") => None,
                        _ => panic!(
                            "{origin}: healthcheck test must start with CMD, CMD-SHELL or NONE"
                        ),
                    }
                }
            }
        };
        let mut argv = entrypoint;
        argv.extend(command);
        out.push(Container {
            origin,
            argv,
            env,
            one_shot: awaited.iter().any(|a| a == name),
            checks: check
                .into_iter()
                .map(|c| Check {
                    what: "healthcheck".into(),
                    run: CheckRun::Exec(c),
                })
                .collect(),
        });
    }
    out
}

/// Every YAML file under `dir`, recursively, in a stable order.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every document of every YAML file under `k8s/`, with its file.
pub fn k8s_documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in yaml_files(&root().join("k8s")) {
        let rel = path
            .strip_prefix(root())
            .expect("under the root")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        let mut docs = vec![String::new()];
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(String::new());
            } else if let Some(d) = docs.last_mut() {
                d.push_str(line);
                d.push('\n');
            }
        }
        for doc in docs {
            let v: Value = serde_yaml_ng::from_str(&doc).unwrap_or_else(|e| panic!("{rel}: {e}"));
            if !v.is_null() {
                out.push((rel.clone(), v));
            }
        }
    }
    out
}

/// The pod template of a workload (Deployment, Job, CronJob, …).
fn pod_spec(doc: &Value) -> Option<&Value> {
    let spec = &doc["spec"];
    let candidates = [
        &spec["template"]["spec"],
        &spec["jobTemplate"]["spec"]["template"]["spec"],
    ];
    candidates.into_iter().find(|s| !s.is_null())
}

/// Data of every ConfigMap / Secret named `name` (kind given), merged.
fn named_data(docs: &[(String, Value)], kind: &str, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, d) in docs {
        if d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name) {
            for field in ["data", "stringData"] {
                if let Some(m) = d[field].as_mapping() {
                    for (k, v) in m {
                        out.insert(
                            k.as_str().expect("key").to_string(),
                            scalar(v).unwrap_or_default(),
                        );
                    }
                }
            }
        }
    }
    out
}

/// Every container (init containers included) of our image in `k8s/`.
pub fn k8s_containers(image: &Image) -> Vec<Container> {
    let docs = k8s_documents();
    let mut out = Vec::new();
    for (file, doc) in &docs {
        let Some(pod) = pod_spec(doc) else { continue };
        let kind = doc["kind"].as_str().unwrap_or("");
        let workload = doc["metadata"]["name"].as_str().unwrap_or("?");
        for (list, init) in [("initContainers", true), ("containers", false)] {
            let Some(containers) = pod[list].as_sequence() else {
                continue;
            };
            for c in containers {
                let ours = c["image"]
                    .as_str()
                    .is_some_and(|i| i.split(':').next() == Some(IMAGE));
                if !ours {
                    continue;
                }
                let cname = c["name"].as_str().unwrap_or("?");
                let origin = format!("{file}: {kind} {workload}, container {cname}");
                out.push(k8s_container(
                    image,
                    &docs,
                    c,
                    origin,
                    init || kind == "Job",
                ));
            }
        }
    }
    out
}

fn k8s_container(
    image: &Image,
    docs: &[(String, Value)],
    c: &Value,
    origin: String,
    one_shot: bool,
) -> Container {
    let mut argv = match &c["command"] {
        Value::Null => image.entrypoint.clone(),
        v => strings(v).expect("command as a list"),
    };
    match &c["args"] {
        Value::Null if c["command"].is_null() => argv.extend(image.cmd.iter().cloned()),
        Value::Null => {}
        v => argv.extend(strings(v).expect("args as a list")),
    }
    let mut env = image.env.clone();
    for from in c["envFrom"].as_sequence().into_iter().flatten() {
        for (key, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            if let Some(name) = from[key]["name"].as_str() {
                let data = named_data(docs, kind, name);
                assert!(
                    !data.is_empty(),
                    "{origin}: {kind} {name} not found under k8s/"
                );
                env.extend(data);
            }
        }
    }
    for e in c["env"].as_sequence().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_string();
        let value = if let Some(v) = scalar(&e["value"]) {
            v
        } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_mapping() {
            let secret = r
                .get("name")
                .and_then(Value::as_str)
                .expect("secretKeyRef name");
            let key = r
                .get("key")
                .and_then(Value::as_str)
                .expect("secretKeyRef key");
            named_data(docs, "Secret", secret)
                .get(key)
                .cloned()
                .unwrap_or_else(|| panic!("{origin}: secret {secret} has no {key}"))
        } else {
            // fieldRef and the like: filled by Kubernetes at run time.
            "from-kubernetes".to_string()
        };
        env.insert(name, value);
    }
    // Named ports → numbers.
    let mut ports = BTreeMap::new();
    for p in c["ports"].as_sequence().into_iter().flatten() {
        if let (Some(n), Some(num)) = (p["name"].as_str(), p["containerPort"].as_u64()) {
            ports.insert(n.to_string(), num as u16);
        }
    }
    let mut checks = Vec::new();
    for what in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let probe = &c[what];
        if probe.is_null() {
            continue;
        }
        let run = if let Some(cmd) = strings(&probe["exec"]["command"]) {
            CheckRun::Exec(cmd)
        } else if !probe["httpGet"].is_null() {
            let port = match &probe["httpGet"]["port"] {
                Value::Number(n) => n.as_u64().expect("port") as u16,
                Value::String(s) => *ports.get(s).unwrap_or_else(|| {
                    panic!(
                        "{origin}: {what} names port {s:?}, which the container does not declare"
                    )
                }),
                other => panic!("{origin}: {what} port {other:?}"),
            };
            let path = probe["httpGet"]["path"].as_str().unwrap_or("/").to_string();
            CheckRun::HttpGet { port, path }
        } else {
            panic!("{origin}: {what} is neither exec nor httpGet");
        };
        checks.push(Check {
            what: what.into(),
            run,
        });
    }
    Container {
        origin,
        argv,
        env,
        one_shot,
        checks,
    }
}
