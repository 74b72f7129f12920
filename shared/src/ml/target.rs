use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three questions the backend asks about a project (DATA-CONTRACT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    CompletionTime,
    BudgetVariance,
    Risk,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::CompletionTime, Target::BudgetVariance, Target::Risk];

    pub fn as_str(&self) -> &'static str {
        match self {
            Target::CompletionTime => "completion_time",
            Target::BudgetVariance => "budget_variance",
            Target::Risk => "risk",
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
