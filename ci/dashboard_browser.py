#!/usr/bin/env python3
"""Drives headless chromium (through chromedriver, WebDriver over HTTP with
the standard library only) against a running dashboard example.

    ci/dashboard_browser.py --driver http://127.0.0.1:9515 --url URL --screenshot docs/dashboard.png

Checks, in a real browser: the page without the token is refused (401);
the page with it loads, takes the token out of the address bar, and shows
values that match /api/state within one refresh; the values update as tasks
start and finish; no console errors; a fetch without credentials is refused
(401). Saves a screenshot. Exits 1 with the reason on the first failure.
"""

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# A guard against a hung run, never a way to wait for something: each wait
# below polls for its condition.
SAFETY_S = 90


def fail(msg):
    print(f"FAIL dashboard-browser: {msg}", file=sys.stderr)
    sys.exit(1)


class WebDriver:
    """The few WebDriver commands needed, over urllib."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=SAFETY_S) as r:
                return json.loads(r.read() or b"null").get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:500]!r}") from None

    def start(self, width, height):
        caps = {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         f"--window-size={width},{height}"],
            },
        }
        v = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = v["sessionId"]

    def s(self, path):
        return f"/session/{self.session}{path}"

    def get(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def js(self, script, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.call("POST", self.s("/execute/async"), {"script": script, "args": list(args)})

    def logs(self):
        for path in ("/se/log", "/log"):
            try:
                return self.call("POST", self.s(path), {"type": "browser"}) or []
            except RuntimeError:
                continue
        fail("chromedriver gives no browser log")

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", self.s(""))
            except Exception:  # noqa: BLE001 - best effort at the end
                pass


def wait_for(what, cond, interval=0.05):
    deadline = time.monotonic() + SAFETY_S
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    fail(f"timed out waiting for {what}")


def api_state(base, token):
    req = urllib.request.Request(base + "/api/state",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=SAFETY_S) as r:
        return json.loads(r.read())


CARDS = ["submitted", "completed", "rejected", "panicked"]

READ_DOM = """
const out = {renders: window.respoolRenders || 0};
for (const k of arguments[0]) {
  const e = document.getElementById('v-' + k);
  out[k] = e ? Number(e.textContent) : null;
}
out.running = Array.from(document.querySelectorAll('#running tr[data-task]'))
  .map((r) => Number(r.getAttribute('data-task')));
out.waiting = document.querySelectorAll('#waiting tr[data-task]').length;
out.classes = Array.from(document.querySelectorAll('#classes tr[data-class]'))
  .map((r) => r.getAttribute('data-class'));
out.refusals = document.querySelectorAll('#refusals tr[data-task]').length;
out.slow = document.querySelectorAll('#slow tr[data-task]').length;
out.legend = Array.from(document.querySelectorAll('#legend [data-dim]')).map((e) => e.dataset.dim);
out.state = window.respoolState || null;
out.status = (document.getElementById('status-text') || {}).textContent;
return out;
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--url", required=True, help="the dashboard URL with ?token=")
    ap.add_argument("--screenshot", required=True)
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.url)
    token = urllib.parse.parse_qs(u.query)["token"][0]
    base = f"{u.scheme}://{u.netloc}"

    wd = WebDriver(a.driver)
    wd.start(1440, 1600)
    try:
        # 1. Without the token: refused, and nothing of the page.
        wd.get(base + "/")
        text = wd.js("return document.body ? document.body.innerText : ''")
        if "401" not in text or "respool dashboard" in wd.js("return document.title"):
            fail(f"the page without a token was not refused: {text[:200]!r}")
        wd.logs()  # drop the 401's console line
        print("ok: no token, 401")

        # 2. With the token: loads, renders, hides the token.
        wd.get(a.url)
        wait_for("the first render", lambda: wd.js("return window.respoolRenders || 0") >= 1)
        if "token=" in wd.js("return location.href"):
            fail("the token stayed in the address bar")
        print("ok: page loads with the token")

        # 3. Values match /api/state within one refresh: the DOM after two
        # more renders lies between the state before and the state after.
        for attempt in range(3):
            before = api_state(base, token)
            r0 = wd.js("return window.respoolRenders || 0")
            wait_for("two renders", lambda: wd.js("return window.respoolRenders || 0") >= r0 + 2)
            dom = wd.js(READ_DOM, CARDS)
            after = api_state(base, token)
            bad = [k for k in CARDS
                   if not before["pool"][k] <= dom[k] <= after["pool"][k]]
            if not bad:
                break
            print(f"  retry {attempt}: {bad} outside [before, after]")
        else:
            fail(f"DOM {[(k, dom[k]) for k in CARDS]} not within "
                 f"{[(k, before['pool'][k], after['pool'][k]) for k in CARDS]}")
        # And the page shows what its own state document says.
        st = dom["state"]
        for k in CARDS:
            if dom[k] != st["pool"][k]:
                fail(f"{k}: the page shows {dom[k]}, its state says {st['pool'][k]}")
        if sorted(dom["running"]) != sorted(r["task"] for r in st["live"]["running"]):
            fail(f"running tasks {dom['running']} != {st['live']['running']}")
        if dom["legend"] != [d["dim"] for d in st["pool"]["dims"] if d["capacity"] > 0]:
            fail(f"legend {dom['legend']} != dims {st['pool']['dims']}")
        print(f"ok: values match /api/state within one refresh "
              f"(completed {before['pool']['completed']} <= {dom['completed']} <= "
              f"{after['pool']['completed']})")

        # 4. Updates as tasks start and finish.
        first = dom
        def moved():
            d = wd.js(READ_DOM, CARDS)
            started = set(d["running"]) - set(first["running"])
            finished = d["completed"] > first["completed"]
            return d if (started and finished and d["submitted"] > first["submitted"]) else None
        later = wait_for("tasks to start and finish on the page", moved, interval=0.2)
        print(f"ok: updates (completed {first['completed']} -> {later['completed']}, "
              f"running {first['running']} -> {later['running']})")

        # 5. The sections the workload fills, once it has (learned classes,
        # a refusal, a slow task).
        full = wait_for("classes, refusals and slow tasks on the page",
                        lambda: (lambda d: d if d["classes"] and d["refusals"] and d["slow"]
                                 else None)(wd.js(READ_DOM, CARDS)), interval=0.2)
        print(f"ok: classes {full['classes']}, {full['refusals']} refusals, "
              f"{full['slow']} slow, {full['waiting']} waiting listed")

        # 6. No console errors (warnings and info are fine).
        errors = [e for e in wd.logs() if e.get("level") == "SEVERE"]
        if errors:
            fail(f"console errors: {errors}")
        print("ok: no console errors")

        # The whole page in one picture.
        height = wd.js("return document.documentElement.scrollHeight")
        wd.call("POST", wd.s("/window/rect"), {"width": 1440, "height": min(int(height) + 120, 4000)})
        r0 = wd.js("return window.respoolRenders || 0")
        wait_for("a render at the new size", lambda: wd.js("return window.respoolRenders || 0") > r0)
        wd.screenshot(a.screenshot)
        print(f"ok: screenshot saved to {a.screenshot}")

        # 7. From the page: a request without credentials is refused, and a
        # write is refused even with them.
        codes = wd.js_async("""
            const done = arguments[arguments.length - 1];
            Promise.all([
              fetch('/api/state', {credentials: 'omit'}).then((r) => r.status),
              fetch('/events', {credentials: 'omit'}).then((r) => r.status),
              fetch('/api/state', {method: 'DELETE'}).then((r) => r.status),
            ]).then(done, (e) => done(String(e)));
        """)
        if codes != [401, 401, 405]:
            fail(f"fetches from the page: {codes}, expected [401, 401, 405]")
        print("ok: from the browser, no token 401 (state and events), DELETE 405")
    finally:
        wd.quit()


if __name__ == "__main__":
    main()
