//! Model artifacts: the JSON of a `TrainedModel`, written atomically and
//! verified by checksum on load.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::features::FEATURE_SET_VERSION;
use super::model::TrainedModel;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("model artifact I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model artifact {path} is damaged: expected sha256 {expected}, found {found}")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("model artifact is unreadable: {0}")]
    Corrupt(String),
    /// The model was trained on a feature set this build does not compute.
    #[error("model artifact {path} uses feature set {found}; this build computes {expected}")]
    Incompatible {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `model` as `dir/file_name` (temp file in `dir`, fsync, rename,
/// fsync of the directory) and returns the path and the SHA-256 (hex) of
/// the bytes written.
pub fn save_artifact(
    dir: &Path,
    file_name: &str,
    model: &TrainedModel,
) -> Result<(PathBuf, String), ArtifactError> {
    if file_name.is_empty() || file_name.contains(['/', '\\']) || file_name.starts_with('.') {
        return Err(ArtifactError::Corrupt(format!(
            "invalid artifact file name {file_name:?}"
        )));
    }
    let bytes = serde_json::to_vec(model)
        .map_err(|e| ArtifactError::Corrupt(format!("serializing model: {e}")))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(file_name);
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&path)(e));
    }
    // The rename is durable only once the directory entry is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((path, sha))
}

/// Reads an artifact, checks its SHA-256 against the registry's record and
/// parses it.
pub fn load_artifact(path: &Path, expected_sha256: &str) -> Result<TrainedModel, ArtifactError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    parse_artifact(&bytes, expected_sha256, path)
}

/// Checks `bytes` against the registry's SHA-256 and parses them; `origin`
/// names where they came from in errors.
pub fn parse_artifact(
    bytes: &[u8],
    expected_sha256: &str,
    origin: &Path,
) -> Result<TrainedModel, ArtifactError> {
    let found = hex::encode(Sha256::digest(bytes));
    if !found.eq_ignore_ascii_case(expected_sha256.trim()) {
        return Err(ArtifactError::Checksum {
            path: origin.to_path_buf(),
            expected: expected_sha256.to_string(),
            found,
        });
    }
    // Each booster is converted to its scoring layout as it is parsed, so
    // forust's larger form exists for one booster at a time.
    let model: TrainedModel = serde_json::from_slice(bytes)
        .map_err(|e| ArtifactError::Corrupt(format!("{}: {e}", origin.display())))?;
    if !model.is_compatible() {
        return Err(ArtifactError::Incompatible {
            path: origin.to_path_buf(),
            expected: FEATURE_SET_VERSION.to_string(),
            found: model.feature_set_version().to_string(),
        });
    }
    let width = model.feature_names().len();
    if let Some(b) = model.boosters().iter().find(|b| b.width() > width) {
        return Err(ArtifactError::Corrupt(format!(
            "{}: a booster splits on feature {} of {width}",
            origin.display(),
            b.width() - 1
        )));
    }
    Ok(model)
}

/// Writes bytes already verified (an artifact fetched from the store) as
/// `path`, atomically, for the next load on this host.
pub fn cache_artifact(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(())
}
