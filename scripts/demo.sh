#!/usr/bin/env bash
# The closed loop, for a person: an A/B test whose candidate degrades, real
# Prometheus and Alertmanager, and the router rolling traffic back.
#
#   scripts/demo.sh            # runs until Ctrl-C
#   DEMO_EXIT_WHEN_DONE=1 scripts/demo.sh   # short mode: exits 0 once the loop has closed
#
# Installs what it needs first (scripts/setup.sh: Debian's prometheus,
# prometheus-alertmanager, python3-venv, curl; PyYAML in .venv-deploy/), then
# builds the two binaries (release). Needs cargo. Everything listens on
# 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
PY=${DEPLOY_VENV:-.venv-deploy}/bin/python
echo "== building (release)"
cargo build --release --quiet --bin mlops-alert-router --bin ab-simulator

work=$(mktemp -d)
pids=()
cleanup() {
  echo; echo "== stopping everything"
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "$1 did not come up" >&2; exit 1; }
say() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }

prom_port=$(free_port); am_port=$(free_port); router_port=$(free_port)
cp simulator/weights.yaml "$work/weights.yaml"
cat >"$work/scenario.yaml" <<'YAML'
variants:
  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}
  enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.01}
steps:
  - after: 20s
    set: {enhanced-predictor: {accuracy: 50}}
YAML

say "Starting the A/B simulator: baseline-predictor 70% / enhanced-predictor 30% (from $work/weights.yaml)"
target/release/ab-simulator --listen 127.0.0.1:0 --rate 100 --weights "$work/weights.yaml" --scenario "$work/scenario.yaml" >"$work/sim.out" 2>"$work/sim.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
sim_addr=$(sed -n 's/^listening on //p' "$work/sim.out")

cat >"$work/alertmanager.yml" <<YAML
route: {receiver: router, group_by: [alertname, experiment], group_wait: 1s, group_interval: 2s, repeat_interval: 1h}
receivers:
  - name: router
    webhook_configs: [{url: "http://127.0.0.1:$router_port/api/v1/alerts", send_resolved: true}]
YAML
prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= --log.level=warn 2>"$work/am.log" &
pids+=($!)

cat >"$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$PWD/alerts/e2e/*.yaml"]
alerting: {alertmanagers: [{static_configs: [{targets: ["127.0.0.1:$am_port"]}]}]}
scrape_configs:
  - {job_name: financial_ab_test, honor_labels: true, static_configs: [{targets: ["$sim_addr"]}]}
  - {job_name: mlops-alert-router, static_configs: [{targets: ["127.0.0.1:$router_port"]}]}
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$prom_port" --rules.alert.resend-delay=1s --log.level=warn 2>"$work/prom.log" &
pids+=($!)

"$PY" - config/examples/mlops.yaml "$work/weights.yaml" "$prom_port" "$am_port" >"$work/router.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
c["traffic_targets"] = {"financial-ab-test-experiment": {"kind": "file", "file": {"path": sys.argv[2]}}}
c["prometheus"]["url"] = f"http://127.0.0.1:{sys.argv[3]}"
c["prometheus"]["cache_ttl"] = "1s"
c["alertmanager"] = {"url": f"http://127.0.0.1:{sys.argv[4]}"}
c["actions"]["oncall-webhook"] = {"type": "log"}  # in the cluster: the paging bridge
print(yaml.safe_dump(c, sort_keys=False))
PY
MLOPS_ALERT_ROUTER__SERVER__LISTEN=127.0.0.1:$router_port \
MLOPS_ALERT_ROUTER__STORAGE__PATH=$work/router.db \
MLOPS_ALERT_ROUTER__WORKER__WEIGHTS_POLL_INTERVAL=1s \
  target/release/mlops-alert-router serve --config "$work/router.yaml" 2>"$work/router.log" &
pids+=($!)

wait_http "http://127.0.0.1:$prom_port/-/ready"; wait_http "http://127.0.0.1:$am_port/-/ready"; wait_http "http://127.0.0.1:$router_port/readyz"
cat <<EOF

  Prometheus    http://127.0.0.1:$prom_port/alerts
  Alertmanager  http://127.0.0.1:$am_port
  Router API    http://127.0.0.1:$router_port/api/v1/notifications
                http://127.0.0.1:$router_port/api/v1/traffic
  Simulator     http://$sim_addr/metrics
  Logs          $work/*.log
EOF
say "In 20 s enhanced-predictor's accuracy falls from 78% to 50% (below the 55% threshold)."

traffic() { curl -s "http://127.0.0.1:$router_port/api/v1/traffic"; }
weights() { traffic | "$PY" -c 'import json,sys; t=json.load(sys.stdin)["targets"]["financial-ab-test-experiment"]; print(", ".join("%s %s%%" % kv for kv in t.get("weights", {}).items()) or t.get("error", "?"))'; }
observed() { curl -s "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode 'query=round(100 * sum by (model_name) (rate(ab_test_requests_total[10s])) / ignoring(model_name) group_left sum(rate(ab_test_requests_total[10s])))' |
  "$PY" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(", ".join("%s %s%%" % (x["metric"]["model_name"], x["value"][1]) for x in sorted(r, key=lambda x: x["metric"]["model_name"])) or "no data yet")'; }
alerts() { curl -s "http://127.0.0.1:$prom_port/api/v1/alerts" | "$PY" -c 'import json,sys; a=json.load(sys.stdin)["data"]["alerts"]; print(", ".join("%s(%s) %s" % (x["labels"]["alertname"], x["labels"].get("model_name", ""), x["state"]) for x in a) or "none")'; }

phase=start
explained_down=0
explained_imbalance=0
while true; do
  sleep 5
  now_alerts=$(alerts)
  printf '  weights: %-44s observed: %-44s alerts: %s\n' "$(weights)" "$(observed)" "$now_alerts"
  if ((!explained_down)) && grep -q 'AlertRouterDown() pending' <<<"$now_alerts"; then
    echo "  (AlertRouterDown pending: Prometheus evaluated the router's self-alert before its first scrape of"
    echo "   the router; it would need 10 s to fire and clears at that first scrape. Nothing is wrong.)"
    explained_down=1
  fi
  if ((!explained_imbalance)) && grep -q 'ABTestTrafficImbalance([a-z-]*) pending' <<<"$now_alerts"; then
    echo "  (ABTestTrafficImbalance pending: the weights moved at once, the observed split is a 30 s rate and"
    echo "   follows within about 30 s; the rule needs 60 s to fire, so after a shift it never does.)"
    explained_imbalance=1
  fi
  case $phase in
    start)
      if traffic | grep -q '"decision":"shifted"'; then
        say "The router got the alert, checked the baseline's accuracy in Prometheus (the guard) and moved enhanced-predictor's traffic to the baseline:"
        traffic | "$PY" -c 'import json,sys; d=[d for d in json.load(sys.stdin)["decisions"] if d["decision"]=="shifted"][0]; print("  ", d["before"], "->", d["after"], "-", d["reason"])'
        say "The simulator follows the weights file; enhanced-predictor stops serving, its accuracy series goes away and the alert resolves."
        phase=shifted
      fi;;
    shifted)
      if curl -s "http://127.0.0.1:$router_port/api/v1/notifications?alertname=ModelAccuracyDegraded&status=resolved" | grep -q '"id"'; then
        say "Alertmanager sent the resolved notification; the router keeps the new weights (on_resolve: hold). The loop is closed."
        phase=done
        [ "${DEMO_EXIT_WHEN_DONE:-}" = 1 ] && exit 0
        echo "  (Ctrl-C to stop)"
      fi;;
  esac
done
