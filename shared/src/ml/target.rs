use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

listed_enum! {
    /// The three questions the backend asks about a project
    /// (docs/DATA-CONTRACT.md). Adding a target: a variant here and a row in
    /// each `match` below; the compiler then points at every place that must
    /// learn of it (its label in `training.rs`, its learner in `fit/`, its
    /// quality gate in `settings.rs`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Target {
        CompletionTime,
        BudgetVariance,
        Risk,
    }
}

impl Target {
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::CompletionTime => "completion_time",
            Target::BudgetVariance => "budget_variance",
            Target::Risk => "risk",
        }
    }

    /// The path segment of its own predict route (`/api/v1/predict/{slug}`),
    /// as the API this service replaces spelled it.
    pub fn route_slug(&self) -> &'static str {
        match self {
            Target::CompletionTime => "completion-time",
            Target::BudgetVariance => "budget-variance",
            Target::Risk => "risk-score",
        }
    }

    /// How its models are judged: the hold-out metric and the gate's direction.
    pub fn metric(&self) -> Metric {
        match self {
            Target::CompletionTime | Target::BudgetVariance => Metric::Mae,
            Target::Risk => Metric::Accuracy,
        }
    }

    /// A class with probabilities rather than a number with an interval.
    pub fn is_classification(&self) -> bool {
        self.metric() == Metric::Accuracy
    }

    /// The names, for messages and documents.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|t| t.as_str()).collect()
    }
}

/// The hold-out metric a target's models are judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean absolute error: lower is better.
    Mae,
    /// Share of correct classes: higher is better.
    Accuracy,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Mae => "mae",
            Metric::Accuracy => "accuracy",
        }
    }

    pub fn higher_is_better(self) -> bool {
        self == Metric::Accuracy
    }

    /// Whether `a` is strictly better than `b` by this metric.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.higher_is_better() {
            a > b
        } else {
            a < b
        }
    }

    /// "min" when the quality gate is a floor, "max" when it is a ceiling.
    pub fn gate_direction(self) -> &'static str {
        if self.higher_is_better() {
            "min"
        } else {
            "max"
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The ancestor API spelled risk as "risk_score" and used dashes in URLs.
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "completion_time" => Ok(Target::CompletionTime),
            "budget_variance" => Ok(Target::BudgetVariance),
            "risk" | "risk_score" => Ok(Target::Risk),
            _ => Err(format!(
                "unknown target {s:?}: expected one of completion_time, budget_variance, risk"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_spellings() {
        for t in Target::ALL {
            assert_eq!(t.as_str().parse::<Target>(), Ok(t));
            assert_eq!(t.to_string().replace('_', "-").parse::<Target>(), Ok(t));
        }
        assert_eq!("risk_score".parse::<Target>(), Ok(Target::Risk));
        assert_eq!("risk-score".parse::<Target>(), Ok(Target::Risk));
        let err = "speed".parse::<Target>().unwrap_err();
        assert!(err.contains("completion_time"), "{err}");
        assert_eq!(
            serde_json::to_string(&Target::BudgetVariance).unwrap(),
            "\"budget_variance\""
        );
    }
}
