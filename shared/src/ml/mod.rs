//! Features, models and artifacts.
//!
//! `extract_features` and `build_training_set` both parse the backend into
//! in-memory project histories and compute features with one function, so
//! what a model is trained on and what it is asked about cannot drift apart.

mod artifact;
mod boost;
pub mod drift;
mod features;
mod fit;
mod forest;
mod history;
mod linear;
mod metrics;
mod model;
mod monitor;
mod settings;
mod snapshot;
mod target;
mod training;
mod tree;

pub use artifact::{ArtifactError, cache_artifact, load_artifact, parse_artifact, save_artifact};
pub use boost::BoostParams;
pub use features::{Extraction, FEATURE_SET_VERSION, FeatureRow, extract_features, feature_names};
pub use fit::{
    ClassFrequencies, CvReport, CvTrial, ProgressFn, TrainError, TrainOptions, TrainReport,
    evaluate, train,
};
pub use model::{Contribution, Prediction, TrainedModel};
pub use monitor::{Actual, MonitoringData, monitoring_data, prediction_scalar, training_reference};
pub use settings::{quality_gate, train_options};
pub use snapshot::write_snapshot;
pub use target::{Metric, Target};
pub use training::{TrainingSet, build_training_set};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod lab;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
