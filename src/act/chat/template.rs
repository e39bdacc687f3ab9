//! Custom message templates (minijinja), `template:` or `template_file:`.
//!
//! A chat template renders the message text in the platform's markup, and
//! every `{{ … }}` is escaped for that platform by default (the platform
//! file's `escape`, as in the default message): a label cannot mention,
//! link or format. `{{ x | safe }}` (or `{% autoescape false %}`) writes a
//! value as it is, for template authors who want it as markup;
//! `{{ link("Runbook", a.links.runbook) }}` writes a link of the platform's
//! (http(s) URLs only, the text escaped). A webhook template renders the
//! JSON body, with every `{{ … }}` written as a JSON value (strings quoted
//! and escaped), so a label cannot break the JSON.
//! Variables: everything in [`View`] (`status`, `title`, `colour`,
//! `severity`, `experiment`, `variants`, `router_actions`, `tables`,
//! `common_labels`, …), `alerts` (the ones that fit the platform's limits)
//! and `omitted` (how many did not).

use super::render::{Dialect, Markup, View};
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// How a template's `{{ … }}` values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// As JSON values (webhook bodies).
    Json,
    /// As text in this platform's markup (chat messages).
    Chat(Dialect),
}

/// A compiled template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

/// The auto-escape name of chat templates (the formatter knows the dialect).
const CHAT: &str = "chat";

impl ChatTemplate {
    /// Compiles `source`. Also renders it once against a sample
    /// notification, so a misspelt filter or function is reported now rather
    /// than when an alert fires.
    pub fn compile(source: &str, escaping: Escaping) -> Result<Self, String> {
        let mut env = Environment::new();
        // `alerts[0].context.accuracy["x"]` on an alert without that context is empty, not an error.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        match escaping {
            Escaping::Json => env.set_auto_escape_callback(|_| AutoEscape::Json),
            Escaping::Chat(d) => {
                env.set_auto_escape_callback(|_| AutoEscape::Custom(CHAT.into()));
                env.set_formatter(move |out, state, value| {
                    // `| safe` and `{% autoescape false %}` are the author's markup.
                    let s = value.to_string();
                    if value.is_safe() || *state.auto_escape() == AutoEscape::None {
                        out.write_str(&s)?;
                    } else {
                        out.write_str(&d.escape(&s))?;
                    }
                    Ok(())
                });
                env.add_function("link", move |text: Value, url: Value| {
                    let text = if text.is_safe() {
                        Markup::from_escaping_template(text.to_string())
                    } else {
                        d.text(&text.to_string())
                    };
                    let out = match url.as_str().and_then(|u| d.link(&text, u)) {
                        Some(link) => link,
                        None => text,
                    };
                    Value::from_safe_string(out.into_string())
                });
            }
        }
        let json = escaping == Escaping::Json;
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

    /// Renders a chat template (values escaped by its formatter) with the
    /// first `shown` alerts of `view`.
    pub fn render_markup(&self, view: &View, shown: usize) -> Result<Markup, String> {
        self.render(view, shown).map(Markup::from_escaping_template)
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
            Escaping::Chat(Dialect::Slack),
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
        let e = ChatTemplate::compile("{{ status ", Escaping::Chat(Dialect::Slack)).unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        let e = ChatTemplate::compile("{{ status | shout }}", Escaping::Chat(Dialect::Slack))
            .unwrap_err();
        assert!(e.contains("unknown filter"), "{e}");
    }

    #[test]
    fn json_templates_quote_values_and_must_render_json() {
        let t = ChatTemplate::compile(
            r#"{"alert": {{ alertname }}, "n": {{ alerts | length }}}"#,
            Escaping::Json,
        )
        .unwrap();
        let out = t.render(&sample_view(), 1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["alert"], "ModelAccuracyDegraded");
        let e = ChatTemplate::compile(r#"{"alert": {{ alertname }}"#, Escaping::Json).unwrap_err();
        assert!(e.contains("valid JSON"), "{e}");
    }

    /// A view whose alert name and summary are hostile.
    fn hostile_view() -> View {
        let body = r#"{"version":"4","receiver":"r","status":"firing","groupKey":"{}:{}",
          "alerts":[{"status":"firing","startsAt":"2026-01-01T00:00:00Z","fingerprint":"0",
            "labels":{"alertname":"<!channel> @all *b* [x](https://evil.example)"},
            "annotations":{"summary":"<users/all> _i_ `c` <https://evil.example|x>",
                           "runbook_url":"https://runbooks.example/a b"}}]}"#;
        let n: crate::ingest::Notification = serde_json::from_str(body).unwrap();
        let context = crate::enrich::Context {
            links: [(
                "runbook".to_owned(),
                "https://runbooks.example/a b".to_owned(),
            )]
            .into(),
            ..Default::default()
        };
        let inputs = [crate::act::AlertInput {
            alert: &n.alerts[0],
            context: &context,
            outcomes: Vec::new(),
        }];
        View::build(0, &n, &inputs)
    }

    #[test]
    fn chat_templates_escape_every_value_for_their_platform() {
        let source = "{{ alertname }} | {% for a in alerts %}{{ a.summary }}{% endfor %}";
        let view = hostile_view();
        for d in [
            Dialect::Slack,
            Dialect::Mattermost,
            Dialect::Discord,
            Dialect::Teams,
            Dialect::GoogleText,
        ] {
            let t = ChatTemplate::compile(source, Escaping::Chat(d)).unwrap();
            let out = t.render(&view, 1).unwrap();
            let expected = format!(
                "{} | {}",
                d.escape(&view.alertname),
                d.escape(&view.alerts[0].summary)
            );
            assert_eq!(out, expected, "{d:?}");
            for bad in [
                "<!channel>",
                "@all",
                "*b*",
                "<users/all>",
                "_i_",
                "`c`",
                "<https",
            ] {
                // A backslash-escaped occurrence is literal text.
                let live = out
                    .match_indices(bad)
                    .any(|(i, _)| !out[..i].ends_with('\\'));
                assert!(!live, "{d:?}: {bad} survived in {out}");
            }
            // Slack renders no Markdown links; everywhere else none survives.
            if d != Dialect::Slack {
                assert!(!out.contains("[x]("), "{d:?}: a link survived in {out}");
            }
        }
    }

    #[test]
    fn safe_and_autoescape_false_opt_out_and_link_writes_the_platforms_link() {
        let view = hostile_view();
        let d = Dialect::Slack;
        let t = ChatTemplate::compile(
            "{{ alertname | safe }}|{% autoescape false %}{{ alertname }}{% endautoescape %}|{{ alertname | e }}",
            Escaping::Chat(d),
        )
        .unwrap();
        let out = t.render(&view, 1).unwrap();
        let raw = &view.alertname;
        assert_eq!(out, format!("{raw}|{raw}|{}", d.escape(raw)));

        let t = ChatTemplate::compile(
            r#"{% for a in alerts %}{{ link("Runbook", a.links.runbook) }} {{ link(a.alertname, a.links.runbook) }} {{ link("none", a.links.missing) }}{% endfor %}"#,
            Escaping::Chat(d),
        )
        .unwrap();
        let out = t.render(&view, 1).unwrap();
        assert_eq!(
            out,
            format!(
                "<https://runbooks.example/a%20b|Runbook> <https://runbooks.example/a%20b|{}> none",
                d.escape(raw)
            )
        );
        let t = ChatTemplate::compile(
            r#"{% for a in alerts %}{{ link("Runbook", a.links.runbook) }}{% endfor %}"#,
            Escaping::Chat(Dialect::Mattermost),
        )
        .unwrap();
        assert_eq!(
            t.render(&view, 1).unwrap(),
            "[Runbook](https://runbooks.example/a%20b)"
        );
    }
}
