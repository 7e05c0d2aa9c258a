"""The whole OAuth story in a real Chromium: the owner registers another brand's app in the dashboard, the app
(examples/other_brand_app.py, on Authlib's OAuth client) sends the owner to the car's consent page, the owner
clicks Allow, the app reads the state of charge and range and sets the charge limit over VISS; the owner revokes
it in the dashboard, and the app's next read, its open subscription and its refresh are all refused."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from pathlib import Path

import pytest
import uvicorn
from test_dashboard import CHROMIUM, expect, screenshot_dir, sync_api
from test_vehicle_demo import LIMIT, ROOT, DemoVehicle

from openbms.runtime.cli import WEB_DIR
from openbms.vehicle.hub import SignalHub
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
other_brand_app = pytest.importorskip("other_brand_app")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: apt-get install chromium")


@pytest.fixture
def vehicle(tmp_path):
    hub = SignalHub()
    demo = DemoVehicle(hub)
    demo.publish()
    hub.publish({f"{ROOT}.Range": 312000})
    stop = demo.run_in_thread(0.1)
    store = Store(f"sqlite:///{tmp_path / 'openbms.db'}")
    with running_server(hub, store, static_dir=WEB_DIR) as server:
        yield server, hub
    stop.set()
    store.close()


class ServedApp:
    """The example app under uvicorn on a port chosen before it is registered (its redirect URI names it)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def start(self, config) -> None:
        self.server = uvicorn.Server(uvicorn.Config(other_brand_app.make_app(config), log_level="warning"))
        self.thread = threading.Thread(target=asyncio.run, args=(self.server.serve(sockets=[self.sock]),), daemon=True)
        self.thread.start()
        while not self.server.started:
            self.thread.join(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def test_register_consent_use_revoke(vehicle, tmp_path):
    server, hub = vehicle
    owner = server.authority.token(server.authority.grant("owner dashboard", ["owner"], 3600))
    app = ServedApp()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        # one browser profile (the consent page knows the owner from the dashboard), phone-sized
        context = browser.new_context(viewport={"width": 390, "height": 844})
        dashboard = context.new_page()
        dashboard.goto(f"{server.http_url}/#token={owner}")
        dashboard.fill("#client-name", "Other Brand App")
        dashboard.fill("#client-redirect", f"{app.url}/callback")
        dashboard.click("#client-form button[type=submit]")
        expect(dashboard.locator("#client-credentials")).to_contain_text("Client secret")
        values = dashboard.locator("#client-credentials dd").all_inner_texts()
        app.start(other_brand_app.Config(server.http_url, values[0], values[1], f"{app.url}/callback"))
        try:
            page = context.new_page()
            page.goto(app.url)
            page.click("#connect")
            expect(page.locator("#consent-app")).to_have_text("Other Brand App")
            expect(page.locator("#consent-scopes")).to_contain_text("Change the charge limit")
            expect(page.locator("#consent-until")).to_contain_text("or until you revoke it")
            page.screenshot(path=screenshot_dir(tmp_path) / "consent-phone.png", full_page=True)
            page.click("#consent-allow")
            expect(page.locator("#message")).to_contain_text("Connected")
            expect(page.locator("#soc")).not_to_have_text("—")
            expect(page.locator("#range")).to_have_text("312000")
            page.fill("#limit", "80")
            page.click("#set-limit")
            expect(page.locator("#message")).to_have_text("Charge limit set to 80 %")
            assert hub.read(LIMIT)[0] == 80
            page.reload()
            expect(page.locator("#subscription")).to_have_text("live")

            dashboard.reload()
            dashboard.get_by_role("button", name="Revoke access of Other Brand App").click()
            expect(dashboard.locator("#grant-result")).to_have_text("Other Brand App no longer has access.")
            page.reload()
            expect(page.locator("#read-problem")).to_contain_text(
                "The car refused a read: Access token is invalid: the owner revoked grant"
            )
            expect(page.locator("#subscription")).to_contain_text(
                "ended: Access token is invalid: the owner revoked grant"
            )
            page.fill("#limit", "60")
            page.click("#set-limit")
            expect(page.locator("#message")).to_contain_text("Charge limit not set")
            assert hub.read(LIMIT)[0] == 80
            page.click("#refresh")
            expect(page.locator("#message")).to_contain_text("Refresh refused: invalid_grant")
            audit = [r for r in server.store.audit(200) if r.app == "Other Brand App"]
            assert any(r.path == "oauth:/oauth/token" and not r.accepted for r in audit)
            assert any(r.path == LIMIT and r.accepted for r in audit)
        finally:
            app.stop()
            browser.close()
