//! Custom message templates (minijinja), `template:` or `template_file:`.
//!
//! A chat template renders the message text in the platform's markup; a
//! webhook template renders the JSON body, with every `{{ … }}` written as a
//! JSON value (strings quoted and escaped), so a label cannot break the JSON.
//! Variables: everything in [`View`] (`status`, `title`, `colour`,
//! `severity`, `experiment`, `variants`, `router_actions`, `tables`,
//! `common_labels`, …), `alerts` (the ones that fit the platform's limits)
//! and `omitted` (how many did not).

use super::render::View;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// A compiled template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Compiles `source`; `json`: values are written as JSON. Also renders it
    /// once against a sample notification, so a misspelt filter or function
    /// is reported now rather than when an alert fires.
    pub fn compile(source: &str, json: bool) -> Result<Self, String> {
        let mut env = Environment::new();
        // `alerts[0].context.accuracy["x"]` on an alert without that context is empty, not an error.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        if json {
            env.set_auto_escape_callback(|_| AutoEscape::Json);
        }
        env.add_template_owned("message", source.to_owned())
            .map_err(|e| e.to_string())?;
        let template = Self { env };
        match template.render_raw(&sample_view(), 1) {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnknownFilter
                        | ErrorKind::UnknownTest
                        | ErrorKind::UnknownFunction
                        | ErrorKind::UnknownMethod
                        | ErrorKind::SyntaxError
                ) =>
            {
                return Err(e.to_string())
            }
            Ok(out) if json => {
                serde_json::from_str::<serde_json::Value>(&out)
                    .map_err(|e| format!("does not render valid JSON for a sample alert: {e}"))?;
            }
            _ => {}
        }
        Ok(template)
    }

    /// Renders with the first `shown` alerts of `view`.
    pub fn render(&self, view: &View, shown: usize) -> Result<String, String> {
        self.render_raw(view, shown).map_err(|e| {
            // minijinja's Display has the line; the detailed chain is in `source`.
            format!("template error: {e}")
        })
    }

    fn render_raw(&self, view: &View, shown: usize) -> Result<String, minijinja::Error> {
        let shown = shown.min(view.alerts.len());
        let ctx = minijinja::context! {
            alerts => Value::from(Serde(&view.alerts[..shown])),
            omitted => view.alerts.len() - shown,
            ..Value::from(Serde(view))
        };
        self.env.get_template("message")?.render(ctx)
    }
}

/// A one-alert notification with enrichment, for the compile-time render.
fn sample_view() -> View {
    const SAMPLE: &str = r#"{"version":"4","receiver":"r","status":"firing","groupKey":"{}:{}",
      "groupLabels":{"alertname":"ModelAccuracyDegraded"},
      "commonLabels":{"alertname":"ModelAccuracyDegraded","severity":"critical"},
      "alerts":[{"status":"firing","startsAt":"2026-01-01T00:00:00Z","fingerprint":"0",
        "labels":{"alertname":"ModelAccuracyDegraded","severity":"critical",
                  "experiment":"e","model_name":"candidate"},
        "annotations":{"summary":"s","description":"d"}}]}"#;
    let n: crate::ingest::Notification = match serde_json::from_str(SAMPLE) {
        Ok(n) => n,
        // A constant that parses in the unit test below.
        Err(_) => return View::build(0, &empty_notification(), &[]),
    };
    let mut context = crate::enrich::Context::default();
    context.values.insert(
        "accuracy".into(),
        crate::enrich::Enriched::Map {
            query: String::new(),
            values: [
                ("candidate".to_owned(), 51.2),
                ("baseline".to_owned(), 72.5),
            ]
            .into(),
        },
    );
    let inputs = [crate::act::AlertInput {
        alert: &n.alerts[0],
        context: &context,
        outcomes: Vec::new(),
    }];
    View::build(0, &n, &inputs)
}

fn empty_notification() -> crate::ingest::Notification {
    crate::ingest::Notification {
        version: "4".into(),
        receiver: String::new(),
        status: crate::ingest::AlertStatus::Firing,
        alerts: Vec::new(),
        group_key: String::new(),
        group_labels: Default::default(),
        common_labels: Default::default(),
        common_annotations: Default::default(),
        external_url: String::new(),
        truncated_alerts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_notification_parses() {
        assert_eq!(sample_view().alerts.len(), 1);
    }

    #[test]
    fn a_template_sees_the_view_and_the_alerts_that_fit() {
        let t = ChatTemplate::compile(
            "{{ status }} {{ alertname }} {% for a in alerts %}[{{ a.variant }} {{ a.context.accuracy[a.variant] }}]{% endfor %} +{{ omitted }}",
            false,
        )
        .unwrap();
        let view = sample_view();
        assert_eq!(
            t.render(&view, 1).unwrap(),
            "firing ModelAccuracyDegraded [candidate 51.2] +0"
        );
        assert_eq!(
            t.render(&view, 0).unwrap(),
            "firing ModelAccuracyDegraded  +1"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_filters_are_caught_at_compile_time() {
        let e = ChatTemplate::compile("{{ status ", false).unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        let e = ChatTemplate::compile("{{ status | shout }}", false).unwrap_err();
        assert!(e.contains("unknown filter"), "{e}");
    }

    #[test]
    fn json_templates_quote_values_and_must_render_json() {
        let t = ChatTemplate::compile(
            r#"{"alert": {{ alertname }}, "n": {{ alerts | length }}}"#,
            true,
        )
        .unwrap();
        let out = t.render(&sample_view(), 1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["alert"], "ModelAccuracyDegraded");
        let e = ChatTemplate::compile(r#"{"alert": {{ alertname }}"#, true).unwrap_err();
        assert!(e.contains("valid JSON"), "{e}");
    }
}
