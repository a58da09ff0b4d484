"""The services page in a real browser against a real ``millrace run``: a commissioning
file with an error is refused and its violation marked at its line; fixed by typing in
the editor, it installs, and its data arrives on the service's page."""

from __future__ import annotations

import pytest

from tests.console.harness import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "svc-console"
#: the error is the last line (11), so the test fixes it by typing at the end
FILE = f"""\
service: {SERVICE}
description: installed from the console
endpoints:
  - {{connection: csim, identity: svc-0, signal: temperature_0, unit: degC}}
connections:
  csim:
    protocol: simulator
    devices: 1
    signals: 2
    identity_prefix: svc-
    interval_ms: -5"""
BAD_LINE = 11


def editor_id(console: Console, testid: str) -> int:
    return int(console.find(f"[data-testid={testid}]").get_attribute("id").lstrip("c"))


def paste(console: Console, testid: str, text: str) -> None:
    """Replace the editor's whole text, as a paste does (a CodeMirror transaction)."""
    console.js(
        "const e = getElement(arguments[0]).editor;"
        "e.dispatch({changes: {from: 0, to: e.state.doc.length, insert: arguments[1]}});",
        editor_id(console, testid),
        text,
    )


def marked(console: Console) -> list[tuple[int, str, str]]:
    """``(line number, data-violation, text)`` of each line the editor marks."""
    got = console.js(
        "const lines = [...document.querySelectorAll('[data-testid=service-editor] .cm-line')];"
        "return lines.map((l, i) => [i + 1, l.getAttribute('data-violation'), l.textContent,"
        " l.classList.contains('mr-violation')]).filter(x => x[3]);"
    )
    return [(int(n), str(path), str(text)) for n, path, text, _ in got]


def test_install_with_an_error_fix_it_and_see_data(console: Console) -> None:
    console.sign_in()
    console.open("/services")
    console.find("[data-testid=service-editor] .cm-content")
    paste(console, "service-editor", FILE)
    console.click("button[name=validate]")
    lines = console.wait(lambda: marked(console), "a marked line")
    # the API's two violations, each at its line: the value, and the endpoint that
    # names the connection it makes invalid
    assert lines == [
        (4, "$.endpoints[0].connection", FILE.splitlines()[3]),
        (BAD_LINE, "$.connections.csim.interval_ms", "    interval_ms: -5"),
    ]
    listed = {e.get_attribute("data-line"): e.text for e in console.all("[data-testid=violation]")}
    assert set(listed) == {"4", str(BAD_LINE)}
    assert "$.connections.csim.interval_ms" in listed[str(BAD_LINE)]

    # installing it anyway is refused before it reaches the API's install
    console.click("button[name=install]")
    console.wait(lambda: "fix the marked violations" in console.text("body"), "the refusal")
    assert console.api.get(f"/services/{SERVICE}").status_code == 404

    # fix it by typing where the error is
    from selenium.webdriver.common.keys import Keys

    content = console.find("[data-testid=service-editor] .cm-content")
    content.click()
    content.send_keys(Keys.CONTROL, Keys.END)
    content.send_keys(Keys.BACKSPACE, Keys.BACKSPACE, "200")
    console.wait(lambda: "interval_ms: 200" in console.text("[data-testid=service-editor]"), "fix")
    console.click("button[name=validate]")
    console.wait(
        lambda: "no violations" in console.text("[data-testid=validation-summary]"), "valid"
    )
    assert marked(console) == []
    console.click("button[name=install]")
    console.wait(lambda: f"service={SERVICE}" in console.driver.current_url, "its page")
    service = console.api.get(f"/services/{SERVICE}").json()["data"]
    assert service["file"]["connections"]["csim"]["interval_ms"] == 200
    console.wait(
        lambda: "svc-0" in console.text("[data-testid=service-data]"), "the service's data"
    )
    latest = console.api.get("/signals/latest", params={"identities": "svc-0"}).json()["data"]
    assert {i["signal"] for i in latest} >= {"temperature_0"}
    assert "running" in console.text("[data-testid=resource-table]")

    # edit it on its page: a new interval saved is the service's next revision; disable
    console.find("[data-testid=service-edit] .cm-content")
    paste(console, "service-edit", FILE.replace("interval_ms: -5", "interval_ms: 300"))
    console.click("button[name=save]")
    got = console.wait(
        lambda: (
            (s := console.api.get(f"/services/{SERVICE}").json()["data"])["revision"] == 2 and s
        ),
        "revision 2",
    )
    assert got["file"]["connections"]["csim"]["interval_ms"] == 300
    console.click("button[name=disable]")
    console.wait(
        lambda: console.api.get(f"/services/{SERVICE}").json()["data"]["status"] == "disabled",
        "the service disabled",
    )
    console.wait(lambda: "disabled" in console.text("[data-testid=service-status]"), "shown")
