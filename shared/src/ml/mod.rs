//! Features, models and artifacts.
//!
//! `extract_features` and `build_training_set` both parse the backend into
//! in-memory project histories and compute features with one function, so
//! what a model is trained on and what it is asked about cannot drift apart.

mod artifact;
mod features;
mod history;
mod model;
mod target;
mod training;
mod tree;

pub use artifact::{ArtifactError, load_artifact, save_artifact};
pub use features::{Extraction, FEATURE_SET_VERSION, FeatureRow, extract_features, feature_names};
pub use model::{Prediction, TrainError, TrainOptions, TrainReport, TrainedModel, train};
pub use target::Target;
pub use training::{TrainingSet, build_training_set};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
