"""The owner's dashboard in a real headless Chromium against the live BMS and server: it shows the battery,
its commands reach the BMS, and the apps it grants access to can read until it revokes them.

Needs Debian's `chromium` (`.ci/run` installs it) or a browser named by OPENBMS_CHROMIUM; the screenshots
in docs/screenshots/ are written by `test_screenshots`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from waiting import PATIENCE_S, http, wait_for

from openbms.cell import load_cell
from openbms.runtime.bms import Bms
from openbms.runtime.cli import WEB_DIR
from openbms.runtime.service import BmsLoop
from openbms.runtime.sources import SimSource
from openbms.runtime.vehicle import SimulatedVehicle
from openbms.vehicle.hub import SignalHub
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from openbms.vehicle.vss import LEAVES, ROOT

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
expect = sync_api.expect
expect.set_options(timeout=PATIENCE_S * 1000)  # waits on the page's state as long as wait_for: ends only a hung test
CHROMIUM = os.environ.get("OPENBMS_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found: apt-get install chromium, or set OPENBMS_CHROMIUM to a Chromium binary"
)
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/screenshots when retaking them (`OPENBMS_SCREENSHOTS=1 make test`), else the test's own folder, so a
    test run leaves the tracked images as they were."""
    return SCREENSHOTS if os.environ.get("OPENBMS_SCREENSHOTS") == "1" else tmp_path


SOC = '[data-path="StateOfCharge.Displayed"]'
OVERLAY = f"{ROOT}.OpenBMS"


@pytest.fixture(scope="module")
def live(tmp_path_factory, warm_kernels):
    """A 100-cell blade pack plugged in at 60 %, so the state changes within seconds, behind the real server."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'openbms.db'}")
    cell = load_cell("blade_lfp")
    source = SimSource(SimulatedVehicle(cell, 100, 10, soc0=0.6, plugged_at_start=True, seed=3))
    bms = Bms(cell, source.series, source.sensors)
    hub = SignalHub()
    loop = BmsLoop(source, bms, hub, store, speed=20.0).start()
    with running_server(hub, store, static_dir=WEB_DIR, history_period_s=0.2) as server:
        wait_for(lambda: hub.read(f"{ROOT}.StateOfCharge.Displayed")[1] is not None, "the BMS published nothing")
        yield server, bms
    loop.stop()
    store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


def owner_token(server, ttl_s=3600) -> str:
    return server.authority.token(server.authority.grant("owner dashboard", ["owner"], ttl_s))


def open_dashboard(browser, server, token, **viewport):
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 800})
    page.goto(f"{server.http_url}/#token={token}")
    return page


def test_the_page_shows_the_battery_live(live, browser):
    server, _ = live
    page = open_dashboard(browser, server, owner_token(server))
    expect(page.locator(SOC)).to_have_text(re.compile(r"^\d+\.\d %$"))
    assert "#token" not in page.url  # the token left the address bar, and is kept for the next visit
    assert page.evaluate("localStorage.getItem('openbms.ownerToken')")
    expect(page.locator("#cell-map li")).to_have_count(100)
    expect(page.locator("#cell-map li.low")).to_have_count(1)
    expect(page.locator("#charging-state")).to_contain_text("Charging")
    # The BMS's overlay: the estimate's uncertainty, both healths, the power limits, the charger's own words.
    expect(page.locator("#soc-bound")).to_have_text(re.compile(r"^± \d+\.\d %$"))
    expect(page.locator("#soc-band")).to_be_visible()
    expect(page.locator('[data-path="OpenBMS.ResistanceHealth"]')).to_have_text(re.compile(r"^\d+\.\d %$"))
    for limit in ("MaxChargePower", "MaxDischargePower"):
        expect(page.locator(f'[data-path="OpenBMS.{limit}"]')).to_have_text(re.compile(r"^\d+\.\d kW$"))
    expect(page.locator("#charger-state")).to_have_text(re.compile(r"^(Full current|Reduced current|Topping up) · "))
    # Every cell's state of charge (shown first), voltage and the temperature of the sensor covering it.
    tiles = page.locator("#cell-map li")
    labels = tiles.evaluate_all("tiles => tiles.map((t) => t.getAttribute('aria-label'))")
    for n, label in enumerate(labels, 1):
        assert re.fullmatch(
            rf"Cell {n}: \d+\.\d % charged, \d\.\d{{3}} V, -?\d+\.\d °C \(sensor {(n - 1) // 10 + 1}\)"
            r"(, weakest cell)?(, being balanced)?",
            label,
        ), label
    assert all(re.fullmatch(r"\d+\.\d", text) for text in tiles.all_inner_texts())
    expect(page.locator("#cell-map li.weakest")).to_have_count(1)
    expect(page.locator("#cell-map li.weakest")).to_have_attribute("aria-label", re.compile("weakest cell"))
    page.get_by_label("Voltage (V)").check()
    expect(tiles.first).to_have_text(re.compile(r"^\d\.\d{3}$"))
    updated = page.locator("#updated").inner_text()
    voltage = page.locator('[data-path="CurrentVoltage"]').inner_text()
    expect(page.locator("#updated")).not_to_have_text(updated)
    expect(page.locator('[data-path="CurrentVoltage"]')).not_to_have_text(voltage)
    page.close()


def test_a_charge_limit_set_on_the_page_reaches_the_bms_and_is_audited(live, browser):
    server, bms = live
    page = open_dashboard(browser, server, owner_token(server))
    expect(page.locator(SOC)).to_have_text(re.compile(r"%"))
    page.get_by_label("Charge limit (percent)").fill("73")
    page.get_by_role("button", name="Set limit").click()
    expect(page.locator("#limit-result")).to_have_text(re.compile(r"Applied: Charge limit: 73 %"))
    assert bms.charger.soc_target == pytest.approx(0.73)
    expect(page.locator('[data-path="Charging.ChargeLimit"]')).to_have_text("73 %")
    expect(page.locator("#audit-table tbody tr").first).to_contain_text("Charge limit: 73 %")
    # Out of range: the BMS, not the browser, answers, in the percent asked; the last answer does not linger.
    page.get_by_label("Charge limit (percent)").fill("30")
    expect(page.locator("#limit-result")).to_have_text("")
    page.get_by_role("button", name="Set limit").click()
    expect(page.locator("#limit-result")).to_have_text(
        "The BMS applied Charge limit: 50 % instead of Charge limit: "
        "30 %. a charge limit of 30 % is outside 50–100 %: set to 50 %"
    )
    assert bms.charger.soc_target == pytest.approx(0.5)
    page.get_by_label("Charge limit (percent)").fill("")
    page.get_by_role("button", name="Set limit").click()
    expect(page.locator("#limit-result")).to_have_text("Enter a charge limit in percent, e.g. 80.")
    page.get_by_label("Charge limit (percent)").fill("80")  # charging again, for the screenshots
    page.get_by_role("button", name="Set limit").click()
    expect(page.locator("#limit-result")).to_have_text(re.compile(r"Applied: Charge limit: 80 %"))
    page.close()


def _boxes(locator) -> list[dict]:
    return locator.evaluate_all("nodes => nodes.map((n) => n.getBoundingClientRect().toJSON())")


def test_history_shows_what_there_is_with_axes_that_read(live, browser):
    """Seconds of history show in every period (7 days too), with round value ticks left of the line and time
    ticks below it that do not overlap."""
    server, _ = live
    page = open_dashboard(browser, server, owner_token(server))
    page.get_by_label("7 days").check()
    expect(page.locator('#charts[data-seconds="604800"] svg')).to_have_count(4)
    expect(page.locator("#charts .empty")).to_have_count(0)
    for figure in page.locator("#charts figure").all():
        line = _boxes(figure.locator(".series, .dot"))
        values = _boxes(figure.locator("text.tick.y"))
        times = sorted(_boxes(figure.locator("text.tick.t")), key=lambda b: b["left"])
        assert len(values) >= 3 and len(times) >= 2, (len(values), len(times))
        assert max(b["right"] for b in values) < min(b["left"] for b in line)  # labels beside the plot, not on it
        assert min(b["top"] for b in times) > max(b["bottom"] for b in line) - 1
        assert all(a["right"] < b["left"] for a, b in zip(times, times[1:]))
        texts = figure.locator("text.tick.y").evaluate_all("nodes => nodes.map((n) => n.textContent)")
        assert all(re.fullmatch(r"-?\d+(\.\d+)?", t) for t in texts), texts
    page.close()


def test_the_phone_layout_never_scrolls_sideways(live, browser):
    server, _ = live
    page = open_dashboard(browser, server, owner_token(server), width=390, height=844)
    expect(page.locator("#cell-map li")).to_have_count(100)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for link in _boxes(page.locator("nav a")):
        assert 0 <= link["left"] and link["right"] <= 390, link
    page.close()


def test_an_app_granted_on_the_page_reads_until_it_is_revoked(live, browser):
    server, _ = live
    page = open_dashboard(browser, server, owner_token(server))
    page.get_by_label("App name").fill("Charging planner")
    page.get_by_label("Read battery state").check()
    page.get_by_role("button", name="Grant access").click()
    expect(page.locator("#new-token")).to_be_visible()
    token = page.locator("#new-token-text").input_value()
    url = f"{server.http_url}/Vehicle/Powertrain/TractionBattery/StateOfCharge/Current"
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(url, headers=headers).status_code == 200

    page.get_by_role("button", name="Revoke access of Charging planner").click()
    expect(page.locator("#grant-table tr", has_text="Charging planner")).to_contain_text("revoked")
    refused = http.get(url, headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    page.close()


def test_a_missing_or_refused_token_reads_clearly(live, browser):
    server, _ = live
    context = browser.new_context()  # its own localStorage: no saved token
    page = context.new_page()
    page.goto(server.http_url + "/")
    expect(page.get_by_role("alert")).to_contain_text("needs your owner token")
    revoked = server.authority.grant("old phone", ["owner"], 3600)
    server.authority.revoke(revoked.id)
    page.goto(f"{server.http_url}/#token={server.authority.token(revoked)}")
    page.reload()  # the fragment alone does not reload the page
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    context.close()


def event(kind, severity, explanation, cell, value, cleared=False):
    return json.dumps(
        {
            "time_s": 1234.5,
            "kind": kind,
            "severity": severity,
            "explanation": explanation,
            "cell": cell,
            "value": value,
            "cleared": cleared,
        }
    )


def test_alarms_are_explained_and_kept_on_the_timeline(live, browser, tmp_path):
    """A hub of its own (the live BMS would overwrite its ErrorCodes at once), holding the live BMS's values.

    The BMS explains overvoltage in its own words (OpenBMS.Events); overtemperature it does not, so the page's
    text stands in. The same hub holds a known weakest cell, balanced cells and sensor temperatures."""
    server, _ = live
    hub, store = SignalHub(stale_after_s=PATIENCE_S), Store(f"sqlite:///{tmp_path / 'alarms.db'}")  # published once
    snapshot = {path: value for path, (value, ts) in server.hub.read_many(LEAVES).items() if ts is not None}
    onset = event("overvoltage", "derate", "cell 3 voltage 3.68 V beyond the derate limit", 3, 3.68)
    hub.publish(
        {
            **snapshot,
            f"{ROOT}.ErrorCodes": ["overtemperature:cell7", "overvoltage:cell3"],
            f"{OVERLAY}.Events": [onset],
            f"{OVERLAY}.WeakestCell": 7,
            f"{OVERLAY}.BalancingCells": [2, 5],
            f"{OVERLAY}.CellTemperatures": [20.0 + j for j in range(10)],
            f"{OVERLAY}.ChargingState": "derated: temperature derating to 40 A",
        }
    )
    with running_server(hub, store, static_dir=WEB_DIR) as alarmed:
        page = open_dashboard(browser, alarmed, owner_token(alarmed))
        bms_said = page.locator("#alarm-list li.active", has_text="overvoltage")
        expect(bms_said).to_contain_text("cell 3")
        expect(bms_said).to_contain_text("power reduced")
        expect(bms_said).to_contain_text("The BMS: Cell 3 voltage 3.68 V beyond the derate limit")
        expect(page.locator("#alarm-list li.active", has_text="overtemperature")).to_contain_text(
            "Cell 7: The battery is too hot"
        )
        expect(page.locator("#alarm-summary")).to_have_text("2 active alarms, the worst power reduced.")
        expect(page.locator("#charger-state")).to_have_text("Reduced current · temperature derating to 40 A")
        tiles = page.locator("#cell-map li")
        expect(tiles.nth(7)).to_have_class(re.compile(r"\bweakest\b"))
        expect(page.locator("#cell-map li.weakest")).to_have_count(1)
        expect(page.locator("#cell-map li.balancing")).to_have_count(2)
        expect(tiles.nth(5)).to_have_attribute("aria-label", re.compile(r", being balanced$"))
        expect(tiles.nth(36)).to_have_attribute("aria-label", re.compile(r", 23\.0 °C \(sensor 4\)"))
        page.get_by_label("Temperature (°C)").check()
        expect(tiles.nth(99)).to_have_text("29.0")

        cleared = event(
            "overvoltage",
            "derate",
            "cell 3 voltage 3.6 V: derate cleared, back inside the safe operating area",
            3,
            3.6,
            cleared=True,
        )
        hub.publish({f"{ROOT}.ErrorCodes": [], f"{OVERLAY}.Events": [onset, cleared]})
        expect(page.locator("#alarm-list li.cleared", has_text="overtemperature")).to_have_count(1)
        expect(page.locator("#alarm-list li.cleared", has_text="overvoltage")).to_contain_text(
            "Cleared: cell 3 voltage 3.6 V: derate cleared"
        )
        expect(page.locator("#alarm-summary")).to_have_text("No active alarms.")
        page.close()
    store.close()


def test_a_silent_bms_shows_no_data_since_instead_of_live_values(live, browser, tmp_path):
    """A hub of its own that hears from its BMS once: a second later the page says since when it has no data."""
    server, _ = live
    hub, store = SignalHub(stale_after_s=1.0), Store(f"sqlite:///{tmp_path / 'silent.db'}")
    snapshot = {path: value for path, (value, ts) in server.hub.read_many(LEAVES).items() if ts is not None}
    hub.publish(snapshot)
    with running_server(hub, store, static_dir=WEB_DIR) as silent:
        page = open_dashboard(browser, silent, owner_token(silent))
        expect(page.locator("#connection")).to_have_text(re.compile(r"^No data since "))
        expect(page.locator("body")).to_have_class(re.compile(r"\bstale\b"))
        back = threading.Event()

        def publish_until_done():  # the BMS is back, publishing five times a second
            while not back.wait(0.2):
                hub.publish(snapshot)

        threading.Thread(target=publish_until_done, daemon=True).start()
        expect(page.locator("#connection")).to_have_text("Live")
        expect(page.locator("body")).not_to_have_class(re.compile(r"\bstale\b"))
        back.set()
        page.close()
    store.close()


@pytest.mark.parametrize("name, width, height", [("phone", 390, 844), ("desktop", 1280, 800)])
def test_screenshots(live, browser, name, width, height, tmp_path):
    server, _ = live
    page = open_dashboard(browser, server, owner_token(server), width=width, height=height)
    expect(page.locator("#cell-map li")).to_have_count(100)
    page.get_by_label("10 minutes").check()  # the history of this young BMS is seconds long
    expect(page.locator('#charts[data-seconds="600"] svg')).to_have_count(4)
    page.screenshot(path=screenshot_dir(tmp_path) / f"dashboard-{name}.png", full_page=True)
    page.close()
