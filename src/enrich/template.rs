//! PromQL query templates that a label value cannot break out of.
//!
//! Every `{{ … }}` output is escaped as the content of a double-quoted PromQL
//! string literal
//! (the formatter ignores `|safe`), and at compile time the template is
//! rendered with every `{{ … }}` output replaced by a marker, whatever its
//! filters, to prove that every interpolation lands inside a quoted string. So `{experiment="{{ labels.experiment }}"}` is
//! accepted and `sum({{ labels.metric }})` is refused at `check-config`.

use minijinja::value::{Object, Value};
use minijinja::{Environment, UndefinedBehavior};
use std::sync::Arc;

/// Escapes `s` for use inside a double-quoted PromQL string literal (Go escapes).
pub fn escape_promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The value of every key in the compile-time probe.
const SENTINEL: &str = "\u{1}mark\"\u{1}";

/// Written by the probe's formatter in place of every `{{ … }}` output, so a
/// filter that changes the value (`|upper`, `|e`, a whole map) cannot hide it.
const MARK: char = '\u{e000}';

/// A compiled query template.
#[derive(Debug)]
pub struct QueryTemplate {
    env: Environment<'static>,
}

/// Template variables: the alert's labels and annotations, the group's common
/// labels and group labels.
pub struct TemplateVars<'a> {
    pub labels: &'a crate::ingest::Labels,
    pub annotations: &'a crate::ingest::Labels,
    pub common_labels: &'a crate::ingest::Labels,
    pub group_labels: &'a crate::ingest::Labels,
}

/// A map where every key exists and holds the sentinel (for the compile-time check).
#[derive(Debug)]
struct AnyKey;

impl Object for AnyKey {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from(SENTINEL))
    }
}

impl QueryTemplate {
    /// Compiles and checks `source`; the error says what is wrong.
    pub fn compile(source: &str) -> Result<Self, String> {
        let environment = |probe: bool| -> Result<Environment<'static>, String> {
            let mut env = Environment::new();
            env.set_undefined_behavior(UndefinedBehavior::Strict);
            env.set_formatter(move |out, _state, value| {
                let written = if probe {
                    out.write_str(MARK.encode_utf8(&mut [0; 4]))
                } else {
                    // Every value, `|safe` or not, is written as string-literal content.
                    let text = match value.as_str() {
                        Some(s) => s.to_owned(),
                        None => value.to_string(),
                    };
                    out.write_str(&escape_promql_string(&text))
                };
                written.map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
                })
            });
            env.add_template_owned("query", source.to_owned())
                .map_err(|e| format!("invalid template: {e}"))?;
            Ok(env)
        };
        let probe = Self {
            env: environment(true)?,
        };
        let any = Value::from_object(AnyKey);
        let rendered = probe
            .render_value(minijinja::context! {
                labels => any.clone(), annotations => any.clone(),
                common_labels => any.clone(), group_labels => any,
            })
            .map_err(|e| format!("invalid template: {e}"))?;
        check_interpolations(&rendered)?;
        Ok(Self {
            env: environment(false)?,
        })
    }

    /// Renders the query for one alert.
    pub fn render(&self, vars: &TemplateVars<'_>) -> Result<String, String> {
        self.render_value(minijinja::context! {
            labels => vars.labels,
            annotations => vars.annotations,
            common_labels => vars.common_labels,
            group_labels => vars.group_labels,
        })
        .map_err(|e| {
            // minijinja's message for a missing map key is "undefined value".
            format!("cannot render query: {e}")
        })
    }

    fn render_value(&self, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template("query")?.render(ctx)
    }
}

/// Every marker in the probe's output must sit inside a double-quoted string literal.
fn check_interpolations(rendered: &str) -> Result<(), String> {
    let mut in_string: Option<char> = None;
    let mut chars = rendered.chars();
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (q, MARK) if q != Some('"') => {
                return Err(
                    "every {{ … }} must be inside a double-quoted PromQL string (e.g. experiment=\"{{ labels.experiment }}\"), \
                     so a label value cannot change the query"
                        .into(),
                );
            }
            (None, '"' | '\'' | '`') => in_string = Some(c),
            (Some(q), '\\') if q != '`' => {
                chars.next();
            }
            (Some(q), c) if c == q => in_string = None,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn render(source: &str, experiment: &str) -> String {
        let t = QueryTemplate::compile(source).unwrap();
        let labels = BTreeMap::from([("experiment".to_owned(), experiment.to_owned())]);
        let empty = BTreeMap::new();
        t.render(&TemplateVars {
            labels: &labels,
            annotations: &empty,
            common_labels: &empty,
            group_labels: &empty,
        })
        .unwrap()
    }

    #[test]
    fn label_values_are_escaped_as_promql_string_content() {
        let q = r#"ab_test_model_accuracy{experiment="{{ labels.experiment }}"}"#;
        assert_eq!(
            render(q, "exp-1"),
            r#"ab_test_model_accuracy{experiment="exp-1"}"#
        );
        assert_eq!(
            render(q, r#"x"} or vector(1) or {a=""#),
            r#"ab_test_model_accuracy{experiment="x\"} or vector(1) or {a=\""}"#
        );
        assert_eq!(
            render(q, "a\\b\nc"),
            r#"ab_test_model_accuracy{experiment="a\\b\nc"}"#
        );
        // |safe does not bypass it.
        let safe = r#"m{e="{{ labels.experiment | safe }}"}"#;
        assert_eq!(render(safe, "\""), r#"m{e="\""}"#);
    }

    #[test]
    fn interpolation_outside_a_string_is_refused_at_compile_time() {
        for bad in [
            "sum({{ labels.metric }})",
            r#"m{a="x"} > {{ labels.threshold }}"#,
            r#"m{a="{{ labels.a }}"} or {{ labels.b }}"#,
            "m{a='{{ labels.a }}'}",
            "m{a=`{{ labels.a }}`}",
            // Found by the promql_template fuzz target: a whole map, or a
            // filter that changes the value, printed outside a string.
            "m > {{ annotations }}",
            "a=l{{ annotations|e }}",
            "sum({{ labels.metric|upper }})",
            r#"m{a="x"} or {{ labels|list }}"#,
        ] {
            let err = QueryTemplate::compile(bad).unwrap_err();
            assert!(
                err.contains("inside a double-quoted PromQL string"),
                "{bad}: {err}"
            );
        }
        for good in [
            r#"m{a="{{ labels.a }}", b="{{ group_labels.b }}", c='lit'}"#,
            r#"m{a=~"{{ labels.a }}|other"}"#,
            r#"m{a="{{ labels }}"}"#,
            "up",
        ] {
            QueryTemplate::compile(good).unwrap();
        }
        assert!(QueryTemplate::compile("{{ labels.a ")
            .unwrap_err()
            .starts_with("invalid template"));
    }

    #[test]
    fn a_missing_label_is_a_render_error_not_an_empty_string() {
        let t = QueryTemplate::compile(r#"m{a="{{ labels.model_name }}"}"#).unwrap();
        let empty = BTreeMap::new();
        let err = t
            .render(&TemplateVars {
                labels: &empty,
                annotations: &empty,
                common_labels: &empty,
                group_labels: &empty,
            })
            .unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }
}
