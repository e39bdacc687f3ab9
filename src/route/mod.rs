//! Route: labels → named actions. (Root-only until the matcher tree lands.)

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `route:` in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default)]
    pub actions: Vec<String>,
}

impl RouteConfig {
    /// Checks every action reference; errors name the key path.
    pub fn validate(&self, action_exists: &dyn Fn(&str) -> bool) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| !action_exists(a))
            .map(|(i, a)| format!("route.actions[{i}]: unknown action {a:?}"))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The runtime tree.
    pub fn compile(&self) -> Route {
        Route {
            actions: self.actions.clone(),
        }
    }
}

/// A compiled route tree.
#[derive(Debug, Clone)]
pub struct Route {
    actions: Vec<String>,
}

/// One matched route node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: String,
    pub actions: Vec<String>,
}

impl Route {
    /// Matched nodes in match order.
    pub fn evaluate(&self, _labels: &BTreeMap<String, String>) -> Vec<RouteMatch> {
        vec![RouteMatch {
            path: "route".into(),
            actions: self.actions.clone(),
        }]
    }
}
