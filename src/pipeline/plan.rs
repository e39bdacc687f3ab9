//! Plan: complete, route and enrich, with no side effect; and the dry-run
//! plan, which also asks each routed action what it would do.

use crate::act::{ActionContext, ActionDeps, ActionSet, AlertInput, Scope};
use crate::enrich::{Context, Enricher};
use crate::ingest::alertmanager::Completer;
use crate::ingest::{Alert, Notification};
use crate::metrics::Metrics;
use crate::route::Route;
use crate::settings::Settings;
use crate::store::ActionRun;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where one alert goes.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Config paths of the matched routes, in match order.
    pub routes: Vec<String>,
    /// Actions to run, in match order, each once.
    pub actions: Vec<String>,
    /// Enrichments the matched routes ask for, each once.
    pub enrich: Vec<String>,
}

/// Complete, route and enrich: everything before acting, with no side
/// effect. Also knows the actions, to ask each what it would do (the dry-run
/// plan).
pub struct Planner {
    route: Route,
    enricher: Enricher,
    completer: Completer,
    actions: ActionSet,
}

/// The fingerprint of a notification-scoped run (it covers many alerts).
pub const NOTIFICATION_RUN: &str = "";

impl Planner {
    /// From its parts.
    pub fn new(route: Route, enricher: Enricher, completer: Completer, actions: ActionSet) -> Self {
        // Matcher forms Alertmanager accepts but logs a warning about.
        for w in route.warnings() {
            tracing::warn!(path = %w.path, "Route configuration: {}", w.message);
        }
        Self {
            route,
            enricher,
            completer,
            actions,
        }
    }

    /// Builds the route tree, enrichment templates, clients and actions from
    /// settings, for offline plans (no ledger: cooldowns are not consulted).
    pub fn from_settings(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let targets = crate::act::traffic::Targets::build(
            &settings.traffic_targets,
            &crate::act::traffic::kube::ClientSource {
                api_url: settings.kubernetes.api_url.clone(),
            },
        );
        let deps = ActionDeps::new(
            None,
            metrics.clone(),
            Arc::new(targets),
            settings.ca.clone(),
        );
        let actions = ActionSet::build(&settings.actions, &deps)
            .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
        Self::with_actions(settings, actions, metrics)
    }

    /// Like [`Planner::from_settings`] with an explicit action set.
    pub fn with_actions(
        settings: &Settings,
        actions: ActionSet,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Ok(Self::new(
            settings.compile_route()?,
            Enricher::new(
                &settings.enrichments,
                settings.prometheus.as_ref(),
                settings.link_settings(),
                metrics,
                &settings.ca,
            )?,
            Completer::new(settings.alertmanager.as_ref(), &settings.ca)?,
            actions,
        ))
    }

    /// The configured actions.
    pub fn actions(&self) -> &ActionSet {
        &self.actions
    }

    /// Route stage for one alert.
    pub fn route_alert(&self, alert: &Alert) -> Routed {
        let mut routed = Routed::default();
        for m in self.route.evaluate(&alert.labels) {
            routed.routes.push(m.path);
            for a in m.actions {
                if !routed.actions.contains(&a) {
                    routed.actions.push(a);
                }
            }
            for e in m.enrich {
                if !routed.enrich.contains(&e) {
                    routed.enrich.push(e);
                }
            }
        }
        routed
    }

    /// When Alertmanager truncated the notification, adds the rest of the
    /// group (see [`Completer::complete_truncated`]); a note when it could not.
    pub async fn complete_truncated(&self, n: &mut Notification) -> Option<String> {
        self.completer.complete_truncated(n).await
    }

    /// Enrich stage for one alert.
    pub async fn context(&self, routed: &Routed, n: &Notification, alert: &Alert) -> Context {
        self.enricher.context(&routed.enrich, n, alert).await
    }

    /// The plan for a notification, storing and changing nothing: per alert
    /// its labels, matched routes, actions, the enrichment context with each
    /// rendered query and its value, and what each alert-scoped action would
    /// do; then what each notification-scoped action (chat) would send.
    pub async fn dry_run(&self, mut n: Notification) -> Value {
        let note = self.complete_truncated(&mut n).await;
        let routed: Vec<Routed> = n.alerts.iter().map(|a| self.route_alert(a)).collect();
        let mut contexts = Vec::with_capacity(n.alerts.len());
        for (alert, r) in n.alerts.iter().zip(&routed) {
            contexts.push(self.context(r, &n, alert).await);
        }
        let mut alerts = Vec::with_capacity(n.alerts.len());
        for ((alert, r), context) in n.alerts.iter().zip(&routed).zip(&contexts) {
            let mut effects = serde_json::Map::new();
            for name in &r.actions {
                if let Some(action) = self.actions.get(name).filter(|a| a.scope() == Scope::Alert) {
                    let input = AlertInput {
                        alert,
                        context,
                        outcomes: Vec::new(),
                    };
                    let ctx = ActionContext::plan(&n, vec![input]);
                    effects.insert(name.clone(), action.plan(&ctx).await);
                }
            }
            alerts.push(json!({
                "fingerprint": alert.fingerprint,
                "status": alert.status,
                "labels": alert.labels,
                "routes": r.routes,
                "actions": r.actions,
                "context": context.plan_value(),
                "effects": effects,
            }));
        }
        let mut messages = serde_json::Map::new();
        for (name, action) in self.actions.iter() {
            if action.scope() != Scope::Notification {
                continue;
            }
            let inputs = inputs_for(name, &n, &routed, &contexts, &[]);
            if inputs.is_empty() {
                continue;
            }
            let ctx = ActionContext::plan(&n, inputs);
            messages.insert(name.to_owned(), action.plan(&ctx).await);
        }
        let mut plan =
            json!({ "dry_run": true, "alerts": alerts, "notification_actions": messages });
        if let Some(note) = note {
            plan["truncated"] = json!(note);
        }
        plan
    }
}

/// The alerts of `n` routed to action `name`, with their contexts and this
/// round's alert-scoped outcomes.
pub(crate) fn inputs_for<'a>(
    name: &str,
    n: &'a Notification,
    routed: &[Routed],
    contexts: &'a [Context],
    runs: &'a [ActionRun],
) -> Vec<AlertInput<'a>> {
    n.alerts
        .iter()
        .zip(routed)
        .zip(contexts)
        .filter(|((_, r), _)| r.actions.iter().any(|a| a == name))
        .map(|((alert, _), context)| AlertInput {
            alert,
            context,
            outcomes: runs
                .iter()
                .filter(|run| run.fingerprint == alert.fingerprint)
                .collect(),
        })
        .collect()
}
