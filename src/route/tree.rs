//! The route tree, with Alertmanager's dispatch semantics.
//!
//! ```yaml
//! route:
//!   actions: [notify-ml]          # root: matches everything, no matchers
//!   routes:
//!     - matchers: ['alertname="ModelAccuracyDegraded"', '{severity=~"critical|warning"}']
//!       actions: [rollback, notify-ml]
//!       continue: true
//!       enrich: [accuracy]
//!       routes: [...]
//! ```
//!
//! Matching ([`Route::evaluate`]) is Alertmanager's `Route.Match`: a node
//! whose matchers all hold visits its children in order, collecting each
//! matching child's matches; it stops after the first matching child unless
//! that child has `continue: true`. When no child matched, the node itself is
//! the match. A route without `actions` inherits its parent's (like a route
//! without `receiver`); `actions: []` means none.
//!
//! A route's matchers are those of `matchers`, plus Alertmanager's deprecated
//! `match` (label → value, an `=` matcher each) and `match_re` (label →
//! regex, a `=~` matcher on `^(?:regex)$`, exactly as Alertmanager builds it),
//! sorted by name, value and operator as Alertmanager sorts them. Inputs
//! Alertmanager accepts with a warning (deprecated or ambiguous forms) give a
//! [`RouteWarning`]; `check-config` prints them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::matcher::{
    format_matchers, is_model_label_name, parse_matchers_checked, sort_matchers, InvalidRegexError,
    MatchOp, Matcher, MatcherParseError,
};

fn is_false(b: &bool) -> bool {
    !*b
}

/// One node of the routing configuration, as written in YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Matcher strings; each may hold several matchers (`a="1", b="2"` or a
    /// `{...}` set). All of them must match. Must be empty on the root.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
    /// Deprecated in Alertmanager, still accepted: label → exact value.
    #[serde(rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_: BTreeMap<String, String>,
    /// Deprecated in Alertmanager, still accepted: label → regex (anchored).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_re: BTreeMap<String, String>,
    /// Action names. `None` (key absent) inherits the parent's actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    /// Keep evaluating later siblings after this route matched.
    #[serde(rename = "continue", skip_serializing_if = "is_false")]
    pub continue_: bool,
    /// Carried through to [`RouteMatch::enrich`]; not inherited.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enrich: Vec<String>,
    /// Child routes, tried in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

/// A configuration error, with the path of the offending YAML element
/// (`route.routes[2].actions[0]: unknown action "rollbak"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct RouteError {
    pub path: String,
    pub kind: RouteErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteErrorKind {
    #[error("{0}")]
    Matcher(MatcherParseError),
    /// A `match` / `match_re` key that is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    /// A `match_re` value that does not compile.
    #[error("{0}")]
    InvalidRegex(InvalidRegexError),
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("duplicate action {0:?} in the same route")]
    DuplicateAction(String),
    #[error("the root route must not have matchers (it receives every alert)")]
    RootHasMatchers,
    #[error("the root route must not set continue")]
    RootContinue,
    #[error("the root route must list its actions (use [] for none); sub-routes inherit them")]
    RootWithoutActions,
}

/// Something Alertmanager accepts but warns about (a deprecated or ambiguous
/// form), with the path of the YAML element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RouteWarning {
    pub path: String,
    pub message: String,
}

/// A compiled route node. Built by [`compile`]; immutable.
#[derive(Debug, Clone)]
pub struct Route {
    path: String,
    /// Only on the root: every warning of the tree, in document order.
    warnings: Vec<RouteWarning>,
    matchers: Vec<Matcher>,
    actions: Vec<String>,
    actions_inherited: bool,
    continue_: bool,
    enrich: Vec<String>,
    routes: Vec<Route>,
}

/// One matching route, in match order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// `route`, `route.routes[0].routes[1]`, ...
    pub path: String,
    /// The route's actions (after inheritance).
    pub actions: Vec<String>,
    /// The route's `enrich` list.
    pub enrich: Vec<String>,
}

/// Validate and compile a route tree. `action_exists` says whether an action
/// name is defined. Errors carry the YAML path of the first problem found
/// (depth first, in document order).
pub fn compile(
    cfg: &RouteConfig,
    action_exists: &dyn Fn(&str) -> bool,
) -> Result<Route, RouteError> {
    let root = "route";
    for (key, present) in [
        ("matchers", !cfg.matchers.is_empty()),
        ("match", !cfg.match_.is_empty()),
        ("match_re", !cfg.match_re.is_empty()),
    ] {
        if present {
            return Err(RouteError {
                path: format!("{root}.{key}"),
                kind: RouteErrorKind::RootHasMatchers,
            });
        }
    }
    if cfg.continue_ {
        return Err(RouteError {
            path: format!("{root}.continue"),
            kind: RouteErrorKind::RootContinue,
        });
    }
    if cfg.actions.is_none() {
        return Err(RouteError {
            path: format!("{root}.actions"),
            kind: RouteErrorKind::RootWithoutActions,
        });
    }
    let mut warnings = Vec::new();
    let mut route = compile_node(cfg, root.to_string(), &[], action_exists, &mut warnings)?;
    route.warnings = warnings;
    Ok(route)
}

fn compile_node(
    cfg: &RouteConfig,
    path: String,
    parent_actions: &[String],
    action_exists: &dyn Fn(&str) -> bool,
    warnings: &mut Vec<RouteWarning>,
) -> Result<Route, RouteError> {
    let mut matchers = Vec::new();
    for (key, map, op) in [
        ("match", &cfg.match_, MatchOp::Equal),
        ("match_re", &cfg.match_re, MatchOp::Regex),
    ] {
        for (name, value) in map {
            let err = |kind| RouteError {
                path: format!("{path}.{key}.{name}"),
                kind,
            };
            if !is_model_label_name(name) {
                return Err(err(RouteErrorKind::InvalidLabelName(name.clone())));
            }
            let matcher = match op {
                // Alertmanager compiles the value as `^(?:value)$` and builds
                // the matcher from that text, which anchors it once more.
                MatchOp::Regex => Matcher::new(name.as_str(), op, value.as_str())
                    .and_then(|_| Matcher::new(name.as_str(), op, format!("^(?:{value})$"))),
                _ => Matcher::new(name.as_str(), op, value.as_str()),
            }
            .map_err(|e| err(RouteErrorKind::InvalidRegex(e)))?;
            let plain = Matcher::new(name.as_str(), op, value.as_str())
                .map_or_else(|_| String::new(), |m| m.to_string());
            warnings.push(RouteWarning {
                path: format!("{path}.{key}.{name}"),
                message: format!(
                    "`{key}` is deprecated in Alertmanager; write it as `matchers: ['{plain}']`"
                ),
            });
            matchers.push(matcher);
        }
    }
    for (i, text) in cfg.matchers.iter().enumerate() {
        let element = format!("{path}.matchers[{i}]");
        let (parsed, warning) = parse_matchers_checked(text).map_err(|e| RouteError {
            path: element.clone(),
            kind: RouteErrorKind::Matcher(e),
        })?;
        if let Some(w) = warning {
            warnings.push(RouteWarning {
                path: element,
                message: format!("{text:?}: {w}"),
            });
        }
        matchers.extend(parsed);
    }
    sort_matchers(&mut matchers);

    let (actions, actions_inherited) = match &cfg.actions {
        None => (parent_actions.to_vec(), true),
        Some(list) => {
            for (i, action) in list.iter().enumerate() {
                let err = |kind| RouteError {
                    path: format!("{path}.actions[{i}]"),
                    kind,
                };
                if !action_exists(action) {
                    return Err(err(RouteErrorKind::UnknownAction(action.clone())));
                }
                if list[..i].contains(action) {
                    return Err(err(RouteErrorKind::DuplicateAction(action.clone())));
                }
            }
            (list.clone(), false)
        }
    };

    let mut routes = Vec::with_capacity(cfg.routes.len());
    for (i, child) in cfg.routes.iter().enumerate() {
        routes.push(compile_node(
            child,
            format!("{path}.routes[{i}]"),
            &actions,
            action_exists,
            warnings,
        )?);
    }

    Ok(Route {
        path,
        warnings: Vec::new(),
        matchers,
        actions,
        actions_inherited,
        continue_: cfg.continue_,
        enrich: cfg.enrich.clone(),
        routes,
    })
}

impl Route {
    /// `route`, `route.routes[0]`, ...
    pub fn path(&self) -> &str {
        &self.path
    }

    /// All matchers of this node (`match`, `match_re` and every matcher
    /// string, flattened), in Alertmanager's order.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// Every warning of the tree (on the root; empty on other nodes): forms
    /// Alertmanager accepts but logs a warning about.
    pub fn warnings(&self) -> &[RouteWarning] {
        &self.warnings
    }

    /// Actions after inheritance.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }

    /// Whether `actions` came from the parent (the key was absent).
    pub fn actions_inherited(&self) -> bool {
        self.actions_inherited
    }

    pub fn continue_(&self) -> bool {
        self.continue_
    }

    pub fn enrich(&self) -> &[String] {
        &self.enrich
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether this node's own matchers all hold (children not considered).
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Call `f` for each matching route in match order, without allocating.
    /// Returns whether this node matched at all (always true for the root).
    pub fn for_each_match<'a, F>(&'a self, labels: &BTreeMap<String, String>, f: &mut F) -> bool
    where
        F: FnMut(&'a Route),
    {
        if !self.matches_labels(labels) {
            return false;
        }
        let mut any_child = false;
        for child in &self.routes {
            if child.for_each_match(labels, f) {
                any_child = true;
                if !child.continue_ {
                    break;
                }
            }
        }
        if !any_child {
            f(self);
        }
        true
    }

    /// The matching route nodes, in match order.
    pub fn matching_routes<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        let mut out = Vec::new();
        self.for_each_match(labels, &mut |r| out.push(r));
        out
    }

    /// The matches for an alert's labels, in match order. Never empty when
    /// called on the root (the root matches everything).
    pub fn evaluate(&self, labels: &BTreeMap<String, String>) -> Vec<RouteMatch> {
        let mut out = Vec::new();
        self.for_each_match(labels, &mut |r| {
            out.push(RouteMatch {
                path: r.path.clone(),
                actions: r.actions.clone(),
                enrich: r.enrich.clone(),
            });
        });
        out
    }

    /// A readable tree for `routes show`, matchers printed as Alertmanager
    /// prints them (`labels.Matchers.String()`, sorted):
    ///
    /// ```text
    /// route  actions: [notify-ml]
    /// └── route.routes[0]  {alertname="X",severity=~"critical"}  actions: [rollback, notify-ml]  continue: true  enrich: [accuracy]
    ///     └── route.routes[0].routes[0]  {team="ml"}  actions: [rollback, notify-ml] (inherited)
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out, "", None);
        out
    }

    fn render_into(&self, out: &mut String, prefix: &str, last: Option<bool>) {
        let (branch, child_prefix) = match last {
            None => ("", String::new()),
            Some(true) => ("└── ", format!("{prefix}    ")),
            Some(false) => ("├── ", format!("{prefix}│   ")),
        };
        let _ = write!(out, "{prefix}{branch}{}", self.path);
        if last.is_some() {
            // As amtool prints a route: its matchers, or `default-route`.
            if self.matchers.is_empty() {
                out.push_str("  default-route");
            } else {
                let _ = write!(out, "  {}", format_matchers(&self.matchers));
            }
        }
        let _ = write!(out, "  actions: [{}]", self.actions.join(", "));
        if self.actions_inherited {
            out.push_str(" (inherited)");
        }
        if self.continue_ {
            out.push_str("  continue: true");
        }
        if !self.enrich.is_empty() {
            let _ = write!(out, "  enrich: [{}]", self.enrich.join(", "));
        }
        out.push('\n');
        let n = self.routes.len();
        for (i, child) in self.routes.iter().enumerate() {
            child.render_into(out, &child_prefix, Some(i + 1 == n));
        }
    }
}

/// What `amtool config routes test` prints for these labels, adapted to
/// actions: the actions of every matching route, in match order, joined with
/// `,` — no de-duplication (amtool prints `a,a` when two matching routes use
/// receiver `a`), routes with `actions: []` contribute nothing — followed by a
/// newline (amtool prints `receivers + "\n"`). Print it with `print!`, not
/// `println!`.
pub fn test_output(route: &Route, labels: &BTreeMap<String, String>) -> String {
    let mut line = String::new();
    route.for_each_match(labels, &mut |r| {
        for action in &r.actions {
            if !line.is_empty() {
                line.push(',');
            }
            line.push_str(action);
        }
    });
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        route: RouteConfig,
    }

    const KNOWN: &[&str] = &[
        "notify-ml",
        "rollback",
        "page",
        "ticket",
        "a",
        "b",
        "c",
        "d",
    ];

    fn known(name: &str) -> bool {
        KNOWN.contains(&name)
    }

    fn config(yaml: &str) -> RouteConfig {
        serde_yaml::from_str::<File>(yaml)
            .expect("valid yaml")
            .route
    }

    fn tree(yaml: &str) -> Route {
        compile(&config(yaml), &known).unwrap_or_else(|e| panic!("compile: {e}"))
    }

    fn compile_err(yaml: &str) -> String {
        match compile(&config(yaml), &known) {
            Ok(_) => panic!("expected a compile error"),
            Err(e) => e.to_string(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn paths(route: &Route, l: &[(&str, &str)]) -> Vec<String> {
        route
            .evaluate(&labels(l))
            .into_iter()
            .map(|m| m.path)
            .collect()
    }

    fn out(route: &Route, l: &[(&str, &str)]) -> String {
        test_output(route, &labels(l))
    }

    const EXAMPLE: &str = r#"
route:
  actions: [notify-ml]
  routes:
    - matchers: ['alertname="ModelAccuracyDegraded"', '{severity=~"critical|warning"}']
      actions: [rollback, notify-ml]
      continue: true
      enrich: [accuracy]
      routes:
        - matchers: ['team="ml"']
        - matchers: ['team="infra"']
          actions: [page]
    - matchers: ['severity="critical"']
      actions: [page]
    - matchers: ['model_name!~"baseline.*"']
      actions: []
"#;

    #[test]
    fn example_tree() {
        let r = tree(EXAMPLE);
        // Matches route 0 (continue), then its child 0 (inherits actions).
        // Route 0 continues, so route 1 is tried and matches; it does not
        // continue, so route 2 is never looked at.
        let m = r.evaluate(&labels(&[
            ("alertname", "ModelAccuracyDegraded"),
            ("severity", "critical"),
            ("team", "ml"),
        ]));
        assert_eq!(
            m,
            vec![
                RouteMatch {
                    path: "route.routes[0].routes[0]".into(),
                    actions: vec!["rollback".into(), "notify-ml".into()],
                    enrich: vec![],
                },
                RouteMatch {
                    path: "route.routes[1]".into(),
                    actions: vec!["page".into()],
                    enrich: vec![],
                },
            ]
        );
        // No child of route 0 matches: route 0 itself is the match (with its enrich).
        let m = r.evaluate(&labels(&[
            ("alertname", "ModelAccuracyDegraded"),
            ("severity", "warning"),
            ("model_name", "baseline-1"),
        ]));
        assert_eq!(
            m,
            vec![RouteMatch {
                path: "route.routes[0]".into(),
                actions: vec!["rollback".into(), "notify-ml".into()],
                enrich: vec!["accuracy".into()],
            }]
        );
        // Nothing else matches: the root.
        assert_eq!(
            paths(&r, &[("alertname", "Other"), ("model_name", "baseline")]),
            ["route"]
        );
        assert_eq!(
            out(&r, &[("alertname", "Other"), ("model_name", "baseline")]),
            "notify-ml\n"
        );
        // Missing model_name is "" which is !~ baseline.* -> route 2, no actions.
        assert_eq!(paths(&r, &[("alertname", "Other")]), ["route.routes[2]"]);
        assert_eq!(out(&r, &[("alertname", "Other")]), "\n");
    }

    #[test]
    fn first_match_wins_without_continue() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['x="1"']
      actions: [b]
    - matchers: ['x=~"1|2"']
      actions: [c]
"#,
        );
        assert_eq!(out(&r, &[("x", "1")]), "b\n");
        assert_eq!(out(&r, &[("x", "2")]), "c\n");
        assert_eq!(out(&r, &[("x", "3")]), "a\n");
    }

    #[test]
    fn continue_collects_later_siblings_and_hides_parent() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['x="1"']
      actions: [b]
      continue: true
    - matchers: ['y="1"']
      actions: [c]
    - actions: [d]
"#,
        );
        assert_eq!(out(&r, &[("x", "1"), ("y", "1")]), "b,c\n");
        // x matches with continue, y does not, the catch-all (no matchers) does.
        assert_eq!(out(&r, &[("x", "1")]), "b,d\n");
        assert_eq!(out(&r, &[]), "d\n");
    }

    #[test]
    fn continue_match_alone_still_hides_parent() {
        // Alertmanager: the parent is a match only when *no* child matched; a
        // matching child with continue counts as a match.
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['x="1"']
      actions: [b]
      continue: true
    - matchers: ['y="1"']
      actions: [c]
"#,
        );
        assert_eq!(paths(&r, &[("x", "1")]), ["route.routes[0]"]);
    }

    #[test]
    fn no_dedup_like_amtool() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['x="1"']
      continue: true
    - matchers: ['x=~".+"']
      actions: [a, b]
"#,
        );
        assert_eq!(out(&r, &[("x", "1")]), "a,a,b\n");
    }

    #[test]
    fn nested_fallthrough_and_inheritance() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['team="ml"']
      actions: [b]
      routes:
        - matchers: ['sev="critical"']
          routes:
            - matchers: ['env="prod"']
              actions: [c]
            - matchers: ['env="dev"']
        - matchers: ['sev="info"']
          actions: []
"#,
        );
        let paths_of = |l: &[(&str, &str)]| paths(&r, l);
        assert_eq!(
            paths_of(&[("team", "ml"), ("sev", "critical"), ("env", "prod")]),
            ["route.routes[0].routes[0].routes[0]"]
        );
        // Grandchild inherits from child, which inherited from route 0.
        assert_eq!(
            out(&r, &[("team", "ml"), ("sev", "critical"), ("env", "dev")]),
            "b\n"
        );
        assert_eq!(
            paths_of(&[("team", "ml"), ("sev", "critical")]),
            ["route.routes[0].routes[0]"]
        );
        assert_eq!(out(&r, &[("team", "ml"), ("sev", "info")]), "\n");
        assert_eq!(paths_of(&[("team", "ml")]), ["route.routes[0]"]);
        assert_eq!(paths_of(&[("team", "infra")]), ["route"]);
        let child = &r.routes()[0].routes()[0];
        assert!(child.actions_inherited());
        assert_eq!(child.actions(), ["b"]);
    }

    #[test]
    fn matcher_strings_are_anded() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['x="1", y="2"', '{z=~"3|4"}', 'w!="5"']
      actions: [b]
"#,
        );
        assert_eq!(r.routes()[0].matchers().len(), 4);
        assert_eq!(out(&r, &[("x", "1"), ("y", "2"), ("z", "4")]), "b\n");
        assert_eq!(
            out(&r, &[("x", "1"), ("y", "2"), ("z", "4"), ("w", "5")]),
            "a\n"
        );
        assert_eq!(out(&r, &[("x", "1"), ("y", "2")]), "a\n");
    }

    #[test]
    fn root_only() {
        let r = tree("route:\n  actions: []\n");
        assert_eq!(paths(&r, &[]), ["route"]);
        assert_eq!(out(&r, &[("a", "b")]), "\n");
    }

    #[test]
    fn error_paths() {
        assert_eq!(
            compile_err(
                r#"
route:
  actions: [a]
  routes:
    - actions: [a]
    - actions: [b]
    - actions: [rollbak]
"#
            ),
            r#"route.routes[2].actions[0]: unknown action "rollbak""#
        );
        assert_eq!(
            compile_err(
                r#"
route:
  actions: [a]
  routes:
    - matchers: ['x="1"']
    - matchers: ['y="1"', 'z=~"(a"']
"#
            ),
            "route.routes[1].matchers[1]: error parsing regexp: missing closing ): `^(?:(a)$`"
        );
        assert_eq!(
            compile_err(
                r#"
route:
  actions: [a]
  routes:
    - matchers: ['team="ml"']
      routes:
        - matchers: ['x="1"']
        - matchers: ['oops']
"#
            ),
            "route.routes[0].routes[1].matchers[0]: bad matcher format: oops"
        );
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  matchers: ['x=\"1\"']\n"),
            "route.matchers: the root route must not have matchers (it receives every alert)"
        );
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  continue: true\n"),
            "route.continue: the root route must not set continue"
        );
        assert!(compile_err("route:\n  routes: []\n").starts_with("route.actions: "));
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  routes:\n    - actions: [b, c, b]\n"),
            r#"route.routes[0].actions[2]: duplicate action "b" in the same route"#
        );
    }

    #[test]
    fn unknown_yaml_keys_are_rejected() {
        let e = serde_yaml::from_str::<File>("route:\n  actions: [a]\n  receiver: x\n")
            .expect_err("unknown key");
        assert!(e.to_string().contains("unknown field `receiver`"), "{e}");
    }

    #[test]
    fn config_round_trips_through_yaml() {
        let cfg = config(EXAMPLE);
        let text = serde_yaml::to_string(&cfg).expect("serialize");
        let back: RouteConfig = serde_yaml::from_str(&text).expect("parse back");
        assert_eq!(back, cfg);
        assert!(text.contains("continue: true"));
        assert!(text.contains("actions: []"));
    }

    #[test]
    fn match_and_match_re_like_alertmanager() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - match: {severity: critical, team: ml}
      match_re: {model_name: "baseline.*"}
      matchers: ['env="prod"']
      actions: [b]
    - match_re: {x: "a)|(b"}
      actions: [c]
"#,
        );
        let m = r.routes()[0].matchers();
        // Sorted by name like Alertmanager; match_re anchored as it does.
        assert_eq!(
            format_matchers(m),
            r#"{env="prod",model_name=~"^(?:baseline.*)$",severity="critical",team="ml"}"#
        );
        let hit = [
            ("severity", "critical"),
            ("team", "ml"),
            ("model_name", "baseline-2"),
            ("env", "prod"),
        ];
        assert_eq!(out(&r, &hit), "b\n");
        assert_eq!(out(&r, &hit[..3]), "a\n");
        // `x=~"a)|(b"` would match "azzz"; match_re's double anchoring does not.
        assert_eq!(out(&r, &[("x", "a")]), "c\n");
        assert_eq!(out(&r, &[("x", "azzz")]), "a\n");
        let w: Vec<String> = r.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            w,
            [
                "route.routes[0].match.severity: `match` is deprecated in Alertmanager; \
                 write it as `matchers: ['severity=\"critical\"']`",
                "route.routes[0].match.team: `match` is deprecated in Alertmanager; \
                 write it as `matchers: ['team=\"ml\"']`",
                "route.routes[0].match_re.model_name: `match_re` is deprecated in Alertmanager; \
                 write it as `matchers: ['model_name=~\"baseline.*\"']`",
                "route.routes[1].match_re.x: `match_re` is deprecated in Alertmanager; \
                 write it as `matchers: ['x=~\"a)|(b\"']`",
            ]
        );
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  routes:\n    - match: {a-b: x}\n"),
            r#"route.routes[0].match.a-b: invalid label name "a-b""#
        );
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  routes:\n    - match: {\"a:b\": x}\n"),
            r#"route.routes[0].match.a:b: invalid label name "a:b""#
        );
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  routes:\n    - match_re: {a: \"[x\"}\n"),
            "route.routes[0].match_re.a: error parsing regexp: missing closing ]: `[x)$`"
        );
        assert_eq!(
            compile_err("route:\n  actions: [a]\n  match: {a: x}\n"),
            "route.match: the root route must not have matchers (it receives every alert)"
        );
    }

    #[test]
    fn fallback_forms_warn_with_their_path() {
        let r = tree(
            r#"
route:
  actions: [a]
  routes:
    - matchers: ['team="ml"', 'job=']
      actions: [b]
    - matchers: ['{foo="bar\t"}']
      actions: [c]
"#,
        );
        let w = r.warnings();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].path, "route.routes[0].matchers[1]");
        assert!(w[0].message.contains("deprecated form"), "{}", w[0]);
        assert!(w[0].message.contains(r#"job="""#), "{}", w[0]);
        assert_eq!(w[1].path, "route.routes[1].matchers[0]");
        assert!(w[1].message.contains("ambiguous form"), "{}", w[1]);
        // `job=` is job="": matches a missing label.
        assert_eq!(out(&r, &[("team", "ml")]), "b\n");
        assert_eq!(out(&r, &[("team", "ml"), ("job", "x")]), "a\n");
        // The classic reading: backslash and t, not a TAB.
        assert_eq!(out(&r, &[("foo", "bar\\t")]), "c\n");
        assert_eq!(out(&r, &[("foo", "bar\t")]), "a\n");
        assert!(tree(EXAMPLE).warnings().is_empty());
    }

    #[test]
    fn render_shows_the_tree() {
        let r = tree(EXAMPLE);
        let expected = "\
route  actions: [notify-ml]
├── route.routes[0]  {alertname=\"ModelAccuracyDegraded\",severity=~\"critical|warning\"}  actions: [rollback, notify-ml]  continue: true  enrich: [accuracy]
│   ├── route.routes[0].routes[0]  {team=\"ml\"}  actions: [rollback, notify-ml] (inherited)
│   └── route.routes[0].routes[1]  {team=\"infra\"}  actions: [page]
├── route.routes[1]  {severity=\"critical\"}  actions: [page]
└── route.routes[2]  {model_name!~\"baseline.*\"}  actions: []
";
        assert_eq!(r.render(), expected);
    }
}
