//! Alertmanager's own test tables, restated: our matcher parsers and route
//! tree against the expectations Alertmanager's repository states for its
//! UTF-8 parser, its classic parser, its fallback mode (the default of
//! Alertmanager >= 0.27) and its route tree.
//!
//! Source: github.com/prometheus/alertmanager at tag v0.34.0 —
//! `matcher/parse/parse_test.go` (TestMatchers, TestMatcher),
//! `pkg/labels/parse_test.go` (TestMatchers), `matcher/compat/parse_test.go`
//! (TestFallbackMatcherParser, TestFallbackMatchersParser),
//! `dispatch/route_test.go` (TestRouteMatch, TestRouteMatchers,
//! TestRouteMatchersAndMatch, TestRouteID). The tables were written from
//! reading those files (inputs and expected results or error texts), not
//! copied code. Runs in plain `cargo test`, no external tool needed.

use std::collections::BTreeMap;

use mlops_alert_router::route::matcher::{
    format_matchers, parse_matchers, parse_matchers_checked, MatchOp, Matcher,
};
use mlops_alert_router::route::{classic, compile, utf8, Route, RouteConfig};

/// An expected matcher: (operator, name, value).
type M = (&'static str, &'static str, &'static str);

fn op(s: &str) -> MatchOp {
    match s {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::Regex,
        "!~" => MatchOp::NotRegex,
        other => panic!("bad op {other}"),
    }
}

fn want(ms: &[M]) -> Vec<Matcher> {
    ms.iter()
        .map(|(o, n, v)| Matcher::new(*n, op(o), *v).expect("valid expected matcher"))
        .collect()
}

/// Expected outcome: the matchers, or the exact error text.
enum Want {
    Ok(&'static [M]),
    Err(&'static str),
}
use Want::{Err as E, Ok as O};

fn check<T: std::fmt::Display>(
    table: &str,
    cases: &[(&str, Want)],
    parse: impl Fn(&str) -> Result<Vec<Matcher>, T>,
) {
    let mut failures = Vec::new();
    for (input, expected) in cases {
        let got = parse(input).map_err(|e| e.to_string());
        let ok = match (expected, &got) {
            (O(ms), Ok(got)) => *got == want(ms),
            (E(text), Err(got)) => got == text,
            _ => false,
        };
        if !ok {
            let expected = match expected {
                O(ms) => format!("Ok({:?})", want(ms)),
                E(t) => format!("Err({t:?})"),
            };
            failures.push(format!("  {input:?}: want {expected}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `matcher/parse/parse_test.go` TestMatchers: the UTF-8 parser alone.
#[test]
fn utf8_parser_table() {
    let cases: Vec<(&str, Want)> = vec![
        ("", O(&[])),
        ("{}", O(&[])),
        ("{foo=bar}", O(&[("=", "foo", "bar")])),
        ("{foo=bar,}", O(&[("=", "foo", "bar")])),
        ("{foo!=bar}", O(&[("!=", "foo", "bar")])),
        ("{foo=~[a-z]+}", O(&[("=~", "foo", "[a-z]+")])),
        ("{foo!~[a-z]+}", O(&[("!~", "foo", "[a-z]+")])),
        ("{foo=🙂}", O(&[("=", "foo", "🙂")])),
        ("{foo=🙂bar}", O(&[("=", "foo", "🙂bar")])),
        ("foo=bar", O(&[("=", "foo", "bar")])),
        ("foo=bar,", O(&[("=", "foo", "bar")])),
        ("foo!=bar", O(&[("!=", "foo", "bar")])),
        ("foo=~[a-z]+", O(&[("=~", "foo", "[a-z]+")])),
        ("foo!~[a-z]+", O(&[("!~", "foo", "[a-z]+")])),
        (r#"{"foo"="bar"}"#, O(&[("=", "foo", "bar")])),
        (r#"{"foo"="bar",}"#, O(&[("=", "foo", "bar")])),
        (r#"{"foo"!="bar"}"#, O(&[("!=", "foo", "bar")])),
        (r#"{"foo"=~"[a-z]+"}"#, O(&[("=~", "foo", "[a-z]+")])),
        (r#"{"foo"=~"\\d+"}"#, O(&[("=~", "foo", r"\d+")])),
        (r#"{"foo"!~"[a-z]+"}"#, O(&[("!~", "foo", "[a-z]+")])),
        (r#"{"foo"="🙂"}"#, O(&[("=", "foo", "🙂")])),
        (r#"{"foo"="\xf0\x9f\x99\x82"}"#, O(&[("=", "foo", "🙂")])),
        (r#"{"foo"="\U0001f642"}"#, O(&[("=", "foo", "🙂")])),
        (r#"{"foo"="🙂bar"}"#, O(&[("=", "foo", "🙂bar")])),
        (r#"{"foo"="bar\n"}"#, O(&[("=", "foo", "bar\n")])),
        (r#"{"foo"="bar\t"}"#, O(&[("=", "foo", "bar\t")])),
        (r#"{"foo"="\"bar\""}"#, O(&[("=", "foo", "\"bar\"")])),
        (r#"{"foo"="bar\\"}"#, O(&[("=", "foo", "bar\\")])),
        (r#""foo"="bar""#, O(&[("=", "foo", "bar")])),
        (r#""foo"="bar","#, O(&[("=", "foo", "bar")])),
        (
            "{foo=bar,bar!=baz}",
            O(&[("=", "foo", "bar"), ("!=", "bar", "baz")]),
        ),
        (
            r#"{foo="bar",bar!="baz"}"#,
            O(&[("=", "foo", "bar"), ("!=", "bar", "baz")]),
        ),
        (
            "foo=bar,bar!=baz",
            O(&[("=", "foo", "bar"), ("!=", "bar", "baz")]),
        ),
        (
            r#"foo="bar",bar!="baz""#,
            O(&[("=", "foo", "bar"), ("!=", "bar", "baz")]),
        ),
        (",", E("0:1: unexpected ,: expected label name")),
        ("{,}", E("1:2: unexpected ,: expected label name")),
        ("{", E("0:1: end of input: expected close brace")),
        ("}", E("0:1: }: expected opening brace")),
        ("foo=bar}", E("0:8: }: expected opening brace")),
        ("{foo=bar", E("0:8: end of input: expected close brace")),
        (
            r#"{foo=:"bar"}"#,
            E(r#"6:11: unexpected "bar": expected a comma or close brace"#),
        ),
        (r#"{foo="bar\w"}"#, E(r#"5:12: "bar\w": invalid input"#)),
        (r#"{"foo"=~"\d+"}"#, E(r#"8:13: "\d+": invalid input"#)),
        (
            r"{foo=bar\n}",
            E(r"8:9: \: invalid input: expected a comma or close brace"),
        ),
        (
            r#"{"foo"="\xf0\x9f"}"#,
            E(r#"7:17: "\xf0\x9f": invalid input"#),
        ),
        // TestMatcher's extra error case (single matcher; same lexing).
        (r#"foo="\xf0\x9f""#, E(r#"4:14: "\xf0\x9f": invalid input"#)),
    ];
    check("matcher/parse TestMatchers", &cases, utf8::parse_matchers);
}

/// `pkg/labels/parse_test.go` TestMatchers: the classic parser alone.
#[test]
fn classic_parser_table() {
    let cases: Vec<(&str, Want)> = vec![
        ("{}", O(&[])),
        (",", E("bad matcher format: ")),
        ("{,}", E("bad matcher format: ")),
        ("{foo='}", O(&[("=", "foo", "'")])),
        ("{foo=`}", O(&[("=", "foo", "`")])),
        ("{foo=\\\"}", O(&[("=", "foo", "\"")])),
        ("{foo=bar}", O(&[("=", "foo", "bar")])),
        (r#"{foo="bar"}"#, O(&[("=", "foo", "bar")])),
        ("{foo=~bar.*}", O(&[("=~", "foo", "bar.*")])),
        (r#"{foo=~"bar.*"}"#, O(&[("=~", "foo", "bar.*")])),
        ("{foo!=bar}", O(&[("!=", "foo", "bar")])),
        (r#"{foo!="bar"}"#, O(&[("!=", "foo", "bar")])),
        ("{foo!~bar.*}", O(&[("!~", "foo", "bar.*")])),
        (r#"{foo!~"bar.*"}"#, O(&[("!~", "foo", "bar.*")])),
        (
            r#"{foo="bar", baz!="quux"}"#,
            O(&[("=", "foo", "bar"), ("!=", "baz", "quux")]),
        ),
        (
            r#"{foo="bar", baz!~"quux.*"}"#,
            O(&[("=", "foo", "bar"), ("!~", "baz", "quux.*")]),
        ),
        (
            r#"{foo="bar",baz!~".*quux", derp="wat"}"#,
            O(&[
                ("=", "foo", "bar"),
                ("!~", "baz", ".*quux"),
                ("=", "derp", "wat"),
            ]),
        ),
        (
            r#"{foo="bar", baz!="quux", derp="wat"}"#,
            O(&[
                ("=", "foo", "bar"),
                ("!=", "baz", "quux"),
                ("=", "derp", "wat"),
            ]),
        ),
        (
            r#"{foo="bar", baz!~".*quux.*", derp="wat"}"#,
            O(&[
                ("=", "foo", "bar"),
                ("!~", "baz", ".*quux.*"),
                ("=", "derp", "wat"),
            ]),
        ),
        (
            r#"{foo="bar", instance=~"some-api.*"}"#,
            O(&[("=", "foo", "bar"), ("=~", "instance", "some-api.*")]),
        ),
        (r#"{foo=""}"#, O(&[("=", "foo", "")])),
        (
            r#"{foo="bar,quux", job="job1"}"#,
            O(&[("=", "foo", "bar,quux"), ("=", "job", "job1")]),
        ),
        (
            r#"{foo = "bar", dings != "bums", }"#,
            O(&[("=", "foo", "bar"), ("!=", "dings", "bums")]),
        ),
        (
            "foo=bar,dings!=bums",
            O(&[("=", "foo", "bar"), ("!=", "dings", "bums")]),
        ),
        (
            r#"{quote="She said: \"Hi, ladies! That's gender-neutral…\""}"#,
            O(&[(
                "=",
                "quote",
                r#"She said: "Hi, ladies! That's gender-neutral…""#,
            )]),
        ),
        (r#"statuscode=~"5..""#, O(&[("=~", "statuscode", "5..")])),
        ("tricky=~~~", O(&[("=~", "tricky", "~~")])),
        (r#"trickier==\\=\=\""#, O(&[("=", "trickier", r#"=\=\=""#)])),
        (
            r#"contains_quote != "\"" , contains_comma !~ "foo,bar" , "#,
            O(&[
                ("!=", "contains_quote", "\""),
                ("!~", "contains_comma", "foo,bar"),
            ]),
        ),
        ("{foo=bar}}", O(&[("=", "foo", "bar}")])),
        ("{foo=bar}},}", O(&[("=", "foo", "bar}}")])),
        ("{foo=,bar=}}", O(&[("=", "foo", ""), ("=", "bar", "}")])),
        (r"{foo=bar\t}", O(&[("=", "foo", r"bar\t")])),
        (r"{foo=bar\n}", O(&[("=", "foo", "bar\n")])),
        (r"{foo=bar\}", O(&[("=", "foo", "bar\\")])),
        (r"{foo=bar\\}", O(&[("=", "foo", "bar\\")])),
        (r#"{foo=bar\"}"#, O(&[("=", "foo", "bar\"")])),
        ("job=", O(&[("=", "job", "")])),
        (
            r#"job="value"#,
            E(r#"matcher value contains unescaped double quote: "value"#),
        ),
        (
            r#"job=value""#,
            E(r#"matcher value contains unescaped double quote: value""#),
        ),
        (
            r#"trickier==\\=\=\"""#,
            E(r#"matcher value contains unescaped double quote: =\\=\=\"""#),
        ),
        (
            r#"contains_unescaped_quote = foo"bar"#,
            E(r#"matcher value contains unescaped double quote: foo"bar"#),
        ),
        (
            r#"{invalid-name = "valid label"}"#,
            E(r#"bad matcher format: invalid-name = "valid label""#),
        ),
        (
            r#"{foo=~"invalid[regexp"}"#,
            E("error parsing regexp: missing closing ]: `[regexp)$`"),
        ),
        // Double-escaped strings.
        (r#""{foo=\"bar"}"#, E(r#"bad matcher format: "{foo=\"bar""#)),
        (r#""foo=\"bar""#, E(r#"bad matcher format: "foo=\"bar""#)),
        (
            r#""foo=\"bar\"""#,
            E(r#"bad matcher format: "foo=\"bar\"""#),
        ),
        (r#""foo=\"bar\""#, E(r#"bad matcher format: "foo=\"bar\""#)),
        (
            r#""{foo=\"bar\"}""#,
            E(r#"bad matcher format: "{foo=\"bar\"}""#),
        ),
        (r#""foo="bar"""#, E(r#"bad matcher format: "foo="bar"""#)),
        ("{{foo=", E("bad matcher format: {foo=")),
        ("{foo=", O(&[("=", "foo", "")])),
        ("{foo=}b", O(&[("=", "foo", "}b")])),
    ];
    check("pkg/labels TestMatchers", &cases, classic::parse_matchers);
}

/// `matcher/compat/parse_test.go`, plus the forms where the two parsers
/// differ (their results derived from the two tables above and the
/// fallback rules of `matcher/compat/parse.go`): what Alertmanager >= 0.27
/// does by default, and what our routes do.
#[test]
fn fallback_mode_table() {
    let cases: Vec<(&str, Want)> = vec![
        // compat/parse_test.go
        ("foo=bar", O(&[("=", "foo", "bar")])),
        ("foo!bar", E("bad matcher format: foo!bar")),
        ("foo🙂=bar", O(&[("=", "foo🙂", "bar")])),
        (r"foo=!bar\n", O(&[("=", "foo", "!bar\n")])),
        (
            r#"foo="\xf0\x9f\x99\x82""#,
            O(&[("=", "foo", r"\xf0\x9f\x99\x82")]),
        ),
        (
            "{foo=bar,bar=baz}",
            O(&[("=", "foo", "bar"), ("=", "bar", "baz")]),
        ),
        ("{foo!bar}", E("bad matcher format: foo!bar")),
        (
            "{foo🙂=bar,bar=baz🙂}",
            O(&[("=", "foo🙂", "bar"), ("=", "bar", "baz🙂")]),
        ),
        (
            r"{foo=!bar,bar=$baz\n}",
            O(&[("=", "foo", "!bar"), ("=", "bar", "$baz\n")]),
        ),
        (
            r#"{foo="\xf0\x9f\x99\x82"}"#,
            O(&[("=", "foo", r"\xf0\x9f\x99\x82")]),
        ),
        // UTF-8 only: quoted names decoded like Go strings.
        (r#"{"foo"="bar\t"}"#, O(&[("=", "foo", "bar\t")])),
        (r#"{"foo\t"="bar"}"#, O(&[("=", "foo\t", "bar")])),
        (r#"{"\xf0\x9f\x99\x82"="x"}"#, O(&[("=", "🙂", "x")])),
        (r#"{"\U0001f642"="x"}"#, O(&[("=", "🙂", "x")])),
        (r#"{"foo"=~"\\d+"}"#, O(&[("=~", "foo", r"\d+")])),
        (
            r#"{invalid-name = "valid label"}"#,
            O(&[("=", "invalid-name", "valid label")]),
        ),
        // Both reject: the classic error.
        (r#"{"foo\d"="x"}"#, E(r#"bad matcher format: "foo\d"="x""#)),
        (r#"{"\xff"="x"}"#, E(r#"bad matcher format: "\xff"="x""#)),
        ("{\"a\nb\"=\"x\"}", E("bad matcher format: \"a\nb\"=\"x\"")),
        (
            r#"{"foo"=~"\d+"}"#,
            E(r#"bad matcher format: "foo"=~"\d+""#),
        ),
        (",", E("bad matcher format: ")),
        ("{,}", E("bad matcher format: ")),
        (
            r#"{foo=~"invalid[regexp"}"#,
            E("error parsing regexp: missing closing ]: `[regexp)$`"),
        ),
        // Classic only (deprecated forms).
        ("job=", O(&[("=", "job", "")])),
        ("{foo=}b", O(&[("=", "foo", "}b")])),
        ("{foo=bar}}", O(&[("=", "foo", "bar}")])),
        ("{", O(&[])),
        ("}", O(&[])),
        ("foo=bar}", O(&[("=", "foo", "bar")])),
        ("{foo=bar", O(&[("=", "foo", "bar")])),
        ("{foo=~}", O(&[("=~", "foo", "")])),
        ("tricky=~~~", O(&[("=~", "tricky", "~~")])),
        ("foo=bar baz", O(&[("=", "foo", "bar baz")])),
        (r"{foo=bar\n}", O(&[("=", "foo", "bar\n")])),
        // Both accept, differently: the classic reading.
        (r#"{foo="bar\t"}"#, O(&[("=", "foo", r"bar\t")])),
        // Agreement.
        ("{foo=🙂bar}", O(&[("=", "foo", "🙂bar")])),
        (r#"{foo="bar\n"}"#, O(&[("=", "foo", "bar\n")])),
        ("", O(&[])),
        ("{}", O(&[])),
    ];
    check("fallback mode", &cases, parse_matchers);
}

/// Every input of the two parser tables, through the fallback mode: the
/// result is the UTF-8 one when it parses and the classic one agrees or
/// fails, else the classic one; a warning exactly when Alertmanager logs one.
#[test]
fn fallback_combines_the_two_tables_like_alertmanager() {
    let inputs = [
        "{foo='}",
        "{foo=`}",
        "{foo=\\\"}",
        "{foo=~bar.*}",
        "{foo=bar}}",
        "{foo=bar}},}",
        "{foo=,bar=}}",
        r"{foo=bar\t}",
        r"{foo=bar\}",
        r"{foo=bar\\}",
        "job=",
        "{foo=",
        "{foo=}b",
        "tricky=~~~",
        r#"trickier==\\=\=\""#,
        "{}",
        "{foo=bar}",
        "foo=bar,",
        r#"{"foo"="bar"}"#,
        r#"{foo="bar",bar!="baz"}"#,
        "{foo=🙂}",
    ];
    for input in inputs {
        let n = utf8::parse_matchers(input);
        let c = classic::parse_matchers(input);
        let (got, warning) = parse_matchers_checked(input).expect(input);
        match (&n, &c) {
            (Ok(n), Ok(c)) if n == c => {
                assert_eq!(&got, n, "{input:?}");
                assert!(warning.is_none(), "{input:?}");
            }
            (Ok(n), Err(_)) => {
                assert_eq!(&got, n, "{input:?}");
                assert!(warning.is_none(), "{input:?}");
            }
            (_, Ok(c)) => {
                assert_eq!(&got, c, "{input:?}");
                assert!(warning.is_some(), "{input:?}");
            }
            (Err(_), Err(_)) => unreachable!("{input:?} parsed"),
        }
    }
}

// ---------------------------------------------------------------------------
// dispatch/route_test.go

/// A tree of `dispatch/route_test.go` in our YAML: each `receiver: X` is
/// `actions: [X]`; grouping and timing options do not exist here.
fn route_tree(yaml: &str) -> Route {
    let cfg: RouteConfig = serde_yaml::from_str(yaml).expect("valid YAML");
    compile(&cfg, &|_| true).unwrap_or_else(|e| panic!("{e}"))
}

/// Alertmanager's `Route.Key()` of every node, by our route path.
fn keys(route: &Route, parent: Option<&str>, out: &mut BTreeMap<String, String>) {
    let own = format_matchers(route.matchers());
    let key = match parent {
        None => own,
        Some(p) => format!("{p}/{own}"),
    };
    for child in route.routes() {
        keys(child, Some(&key), out);
    }
    out.insert(route.path().to_string(), key);
}

/// Label set → (receivers in match order, keys of the matching routes).
type RouteCase = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static [&'static str],
);

fn check_routes(name: &str, tree: &Route, cases: &[RouteCase]) {
    let mut all_keys = BTreeMap::new();
    keys(tree, None, &mut all_keys);
    for (labels, receivers, want_keys) in cases {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let matches = tree.evaluate(&labels);
        let got_receivers: Vec<String> = matches.iter().map(|m| m.actions.join(",")).collect();
        let got_keys: Vec<&str> = matches.iter().map(|m| all_keys[&m.path].as_str()).collect();
        assert_eq!(got_receivers, *receivers, "{name}: {labels:?}");
        assert_eq!(got_keys, *want_keys, "{name}: {labels:?}");
    }
}

const ROUTE_MATCH: &str = r#"
actions: [notify-def]
routes:
- match: {owner: 'team-A'}
  actions: [notify-A]
  routes:
  - match: {env: 'testing'}
    actions: [notify-testing]
  - match: {env: "production"}
    actions: [notify-productionA]
    continue: true
  - match_re: {env: "produ.*", job: ".*"}
    actions: [notify-productionB]
- match_re: {owner: 'team-(B|C)'}
  actions: [notify-BC]
- match: {group_by: 'role'}
  routes:
  - match: {env: 'testing'}
    actions: [notify-testing]
    routes:
    - match: {wait: 'long'}
"#;

const ROUTE_MATCHERS: &str = r#"
actions: [notify-def]
routes:
- matchers: ['{owner="team-A"}', '{level!="critical"}']
  actions: [notify-A]
  routes:
  - matchers: ['{env="testing"}', '{baz!~".*quux"}']
    actions: [notify-testing]
  - matchers: ['{env="production"}']
    actions: [notify-productionA]
    continue: true
  - matchers: [ env=~"produ.*", job=~".*"]
    actions: [notify-productionB]
- matchers: [owner=~"team-(B|C)"]
  actions: [notify-BC]
- matchers: [group_by="role"]
  routes:
  - matchers: ['{env="testing"}']
    actions: [notify-testing]
    routes:
    - matchers: [wait="long"]
"#;

const ROUTE_MATCHERS_AND_MATCH: &str = r#"
actions: [notify-def]
routes:
- matchers: ['{owner="team-A"}', '{level!="critical"}']
  actions: [notify-A]
  routes:
  - matchers: ['{env="testing"}', '{baz!~".*quux"}']
    actions: [notify-testing]
  - match: {env: "production"}
    actions: [notify-productionA]
    continue: true
  - matchers: [ env=~"produ.*", job=~".*"]
    actions: [notify-productionB]
- match_re: {owner: 'team-(B|C)'}
  actions: [notify-BC]
- matchers: [group_by="role"]
  routes:
  - matchers: ['{env="testing"}']
    actions: [notify-testing]
    routes:
    - matchers: [wait="long"]
"#;

#[test]
fn route_match_table() {
    let tree = route_tree(ROUTE_MATCH);
    let cases: &[RouteCase] = &[
        (
            &[("owner", "team-A")],
            &["notify-A"],
            &[r#"{}/{owner="team-A"}"#],
        ),
        (
            &[("owner", "team-A"), ("env", "unset")],
            &["notify-A"],
            &[r#"{}/{owner="team-A"}"#],
        ),
        (
            &[("owner", "team-C")],
            &["notify-BC"],
            &[r#"{}/{owner=~"^(?:team-(B|C))$"}"#],
        ),
        (
            &[("owner", "team-A"), ("env", "testing")],
            &["notify-testing"],
            &[r#"{}/{owner="team-A"}/{env="testing"}"#],
        ),
        (
            &[("owner", "team-A"), ("env", "production")],
            &["notify-productionA", "notify-productionB"],
            &[
                r#"{}/{owner="team-A"}/{env="production"}"#,
                r#"{}/{owner="team-A"}/{env=~"^(?:produ.*)$",job=~"^(?:.*)$"}"#,
            ],
        ),
        (
            &[("group_by", "role")],
            &["notify-def"],
            &[r#"{}/{group_by="role"}"#],
        ),
        (
            &[("env", "testing"), ("group_by", "role")],
            &["notify-testing"],
            &[r#"{}/{group_by="role"}/{env="testing"}"#],
        ),
        (
            &[("env", "testing"), ("group_by", "role"), ("wait", "long")],
            &["notify-testing"],
            &[r#"{}/{group_by="role"}/{env="testing"}/{wait="long"}"#],
        ),
    ];
    check_routes("TestRouteMatch", &tree, cases);
}

const MATCHERS_CASES: &[RouteCase] = &[
    (
        &[("owner", "team-A")],
        &["notify-A"],
        &[r#"{}/{level!="critical",owner="team-A"}"#],
    ),
    (
        &[("owner", "team-A"), ("env", "unset")],
        &["notify-A"],
        &[r#"{}/{level!="critical",owner="team-A"}"#],
    ),
    (
        &[("owner", "team-A"), ("env", "testing")],
        &["notify-testing"],
        &[r#"{}/{level!="critical",owner="team-A"}/{baz!~".*quux",env="testing"}"#],
    ),
    (
        &[("owner", "team-A"), ("env", "production")],
        &["notify-productionA", "notify-productionB"],
        &[
            r#"{}/{level!="critical",owner="team-A"}/{env="production"}"#,
            r#"{}/{level!="critical",owner="team-A"}/{env=~"produ.*",job=~".*"}"#,
        ],
    ),
    (
        &[("group_by", "role")],
        &["notify-def"],
        &[r#"{}/{group_by="role"}"#],
    ),
    (
        &[("env", "testing"), ("group_by", "role")],
        &["notify-testing"],
        &[r#"{}/{group_by="role"}/{env="testing"}"#],
    ),
    (
        &[("env", "testing"), ("group_by", "role"), ("wait", "long")],
        &["notify-testing"],
        &[r#"{}/{group_by="role"}/{env="testing"}/{wait="long"}"#],
    ),
];

#[test]
fn route_matchers_table() {
    let tree = route_tree(ROUTE_MATCHERS);
    check_routes("TestRouteMatchers", &tree, MATCHERS_CASES);
    check_routes(
        "TestRouteMatchers",
        &tree,
        &[(
            &[("owner", "team-C")],
            &["notify-BC"],
            &[r#"{}/{owner=~"team-(B|C)"}"#],
        )],
    );
}

#[test]
fn route_matchers_and_match_table() {
    let tree = route_tree(ROUTE_MATCHERS_AND_MATCH);
    check_routes("TestRouteMatchersAndMatch", &tree, MATCHERS_CASES);
    check_routes(
        "TestRouteMatchersAndMatch",
        &tree,
        &[(
            &[("owner", "team-C")],
            &["notify-BC"],
            &[r#"{}/{owner=~"^(?:team-(B|C))$"}"#],
        )],
    );
}

/// TestRouteID's tree: every node's key (Alertmanager's ID without the
/// sibling index), i.e. matchers printed and ordered as Alertmanager does.
#[test]
fn route_keys_print_like_alertmanager() {
    let tree = route_tree(
        r#"
actions: [default]
routes:
- matchers: [foo=bar]
  continue: true
  routes:
  - matchers: [bar=baz]
- matchers: [foo=bar]
  continue: true
  routes:
  - matchers: [bar=baz]
- matchers: [foo=bar]
  continue: true
  routes:
  - matchers: [bar=baz]
- matchers: [bar=baz]
  continue: true
  routes:
  - matchers: [baz=qux]
  - matchers: [qux=corge]
- matchers:
  - qux=~"[a-zA-Z0-9]+"
  continue: true
- matchers:
  - corge!~"[0-9]+"
"#,
    );
    let mut all = BTreeMap::new();
    keys(&tree, None, &mut all);
    let ids: Vec<String> = [
        ("route.routes[0]", 0),
        ("route.routes[0].routes[0]", 0),
        ("route.routes[1]", 1),
        ("route.routes[3]", 3),
        ("route.routes[3].routes[1]", 1),
        ("route.routes[4]", 4),
        ("route.routes[5]", 5),
    ]
    .iter()
    .map(|(p, i)| format!("{}/{i}", all[*p]))
    .collect();
    assert_eq!(
        ids,
        [
            r#"{}/{foo="bar"}/0"#,
            r#"{}/{foo="bar"}/{bar="baz"}/0"#,
            r#"{}/{foo="bar"}/1"#,
            r#"{}/{bar="baz"}/3"#,
            r#"{}/{bar="baz"}/{qux="corge"}/1"#,
            r#"{}/{qux=~"[a-zA-Z0-9]+"}/4"#,
            r#"{}/{corge!~"[0-9]+"}/5"#,
        ]
    );
}
