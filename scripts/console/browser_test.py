#!/usr/bin/env python3
"""The console in a real browser: Debian's chromium, driven by chromium-driver
through selenium, against a live router (scripts/test-console.sh starts it with
scripts/console/router.yaml and a file traffic target at 70/30).

What a person on call does: sees the experiment's weights after the router
shifted them, opens a dead letter, presses Replay, reads the dry-run preview,
confirms, and sees the new round. Along the way: no console error (a CSP
violation is one), axe-core's WCAG 2.1 A/AA rules pass on every page, the
phone-sized page does not scroll sideways, and each page is small.

Screenshots go to --out. Exit status 0 = all passed.
"""

import argparse
import base64
import json
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASIC = "oncall:console-test-password"
TOKEN = "console-test-token"
EXPERIMENT = "financial-ab-test-experiment"
# Largest page the console may serve (bytes of HTML): it must stay quick on a phone.
MAX_PAGE_BYTES = 40_000

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def api(base, method, path, body=None):
    req = urllib.request.Request(
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def poll(what, fn, timeout=30):
    """Polls fn until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def seed(base, fixtures):
    """A shift (accuracy alert on the candidate) and a dead letter (the
    on-call webhook nobody listens to)."""
    for f in ("accuracy-firing.json", "server-down-firing.json"):
        status, _ = api(base, "POST", "/api/v1/alerts", (fixtures / f).read_bytes())
        assert status == 200, status
    poll("the shift", lambda: any(d["decision"] == "shifted" for d in api(base, "GET", "/api/v1/traffic")[1]["decisions"]))
    return poll("the dead letter", lambda: api(base, "GET", "/api/v1/dead-letters")[1]["dead_letters"])[0]


def browser(out):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    # What the browser sends once the user answered the Basic prompt.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {
        "headers": {"Authorization": "Basic " + base64.b64encode(BASIC.encode()).decode()}
    })
    return driver


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]


def audit(driver, axe_js, page):
    """axe-core's WCAG 2.0/2.1 A and AA rules on the current page; no console error."""
    driver.execute_script(axe_js)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done({violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})), passes: r.passes.length}))"
        ".catch(e => done({error: String(e)}));"
    )
    check("error" not in result, f"{page}: axe ran ({result.get('error', '')})")
    violations = result.get("violations", [])
    check(not violations, f"{page}: no accessibility violation ({result.get('passes', 0)} rules passed)"
          + "".join(f"\n       {v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in violations))
    errors = console_errors(driver)
    check(not errors, f"{page}: no console error" + "".join(f"\n       {e['message']}" for e in errors))
    size = len(driver.page_source.encode())
    check(size < MAX_PAGE_BYTES, f"{page}: page is {size} bytes (< {MAX_PAGE_BYTES})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--axe", required=True, help="axe.min.js (axe-core from npm)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    base = args.base
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    axe_js = Path(args.axe).read_text()
    fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

    dead = seed(base, fixtures)
    nid = dead["notification_id"]
    driver = browser(out)
    wait = WebDriverWait(driver, 15)
    try:
        # 1. The experiment after the shift: 70/30 became 100/0.
        driver.get(base + "/console")
        wait.until(EC.title_contains("Experiments"))
        table = driver.find_element(By.CSS_SELECTOR, f'table.weights[data-experiment="{EXPERIMENT}"]')
        weights = {td.get_attribute("data-variant"): td.text for td in table.find_elements(By.CSS_SELECTOR, "td[data-variant]")}
        check(weights == {"baseline-predictor": "100%", "enhanced-predictor": "0%"}, f"weights after the shift: {weights}")
        last = driver.find_element(By.CSS_SELECTOR, ".decision")
        check("shifted" in last.text and "enhanced-predictor is alerting" in last.text, "the last decision shows its kind and reason")
        check("+30" in last.text and "-30" in last.text, "the last decision shows its numbers (+30/-30)")
        marks = driver.find_elements(By.CSS_SELECTOR, "svg line.mark.moved")
        check(len(marks) == 1, f"the chart marks the shift ({len(marks)} marks)")
        check(len(driver.find_elements(By.CSS_SELECTOR, "svg polyline")) == 2, "the chart has one line per variant")
        driver.save_screenshot(str(out / "experiments.png"))
        audit(driver, axe_js, "experiments")

        # 2. The same page on a phone: nothing scrolls sideways.
        driver.set_window_size(390, 844)
        driver.refresh()
        overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 0, f"phone width: no horizontal scrolling ({overflow} px)")
        driver.save_screenshot(str(out / "experiments-phone.png"))
        driver.set_window_size(1280, 1000)

        # 3. The notifications list, filtered by alert name.
        driver.find_element(By.LINK_TEXT, "Notifications").click()
        wait.until(EC.title_contains("Notifications"))
        Select(driver.find_element(By.ID, "f-status")).select_by_value("firing")
        driver.find_element(By.ID, "f-alertname").send_keys("ModelServerDown")
        driver.find_element(By.CSS_SELECTOR, "form.filter button").click()
        wait.until(EC.url_contains("alertname=ModelServerDown"))
        rows = driver.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
        check(len(rows) == 1 and "ModelServerDown" in rows[0].text, f"filter by alert name: {len(rows)} row(s)")
        driver.save_screenshot(str(out / "notifications.png"))
        audit(driver, axe_js, "notifications")

        # 4. Dead letters: open one.
        driver.find_element(By.LINK_TEXT, "Dead letters").click()
        wait.until(EC.title_contains("Dead letters"))
        row = driver.find_element(By.CSS_SELECTOR, "tr.dead-letter")
        check("page-oncall" in row.text and "connection refused" in row.text, "the dead letter names its action and error")
        driver.save_screenshot(str(out / "dead-letters.png"))
        audit(driver, axe_js, "dead letters")
        row.find_element(By.PARTIAL_LINK_TEXT, f"#{nid}").click()
        wait.until(EC.title_contains(f"Notification {nid}"))
        run = driver.find_element(By.CSS_SELECTOR, f"#run-{dead['id']}")
        check("dead" in run.text and "Last error" in run.text, "the notification shows the dead run with its error")
        driver.save_screenshot(str(out / "notification.png"))
        audit(driver, axe_js, "notification")

        # 5. Replay: the dry-run preview, then the confirmation.
        driver.find_element(By.PARTIAL_LINK_TEXT, "Replay").click()
        wait.until(EC.title_contains("Replay notification"))
        body = driver.find_element(By.TAG_NAME, "main").text
        check("Dry-run plan" in body and "page-oncall" in body, "the preview shows the dry-run plan")
        check(api(base, "GET", f"/api/v1/notifications/{nid}")[1]["round"] == 0, "the preview started nothing")
        driver.save_screenshot(str(out / "replay-preview.png"))
        audit(driver, axe_js, "replay preview")
        driver.find_element(By.CSS_SELECTOR, "form.confirm button").click()
        wait.until(EC.presence_of_element_located((By.ID, "round-1")))
        check("Replayed: round 1 started" in driver.find_element(By.TAG_NAME, "main").text, "the new round is announced")

        # 6. The new round runs (and dies again: nothing listens).
        def round_one_dead():
            driver.refresh()
            section = driver.find_element(By.ID, "round-1")
            return "page-oncall" in section.text and "dead" in section.text and section
        section = poll("round 1's run", round_one_dead)
        check("Round 1 (latest)" in section.text, "round 1 is the latest round")
        driver.save_screenshot(str(out / "replayed.png"))
        audit(driver, axe_js, "replayed notification")
        check(api(base, "GET", f"/api/v1/notifications/{nid}")[1]["round"] == 1, "the API agrees: round 1")
    finally:
        driver.quit()

    print(f"{len(failures)} failure(s); screenshots in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
