# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs site (make docs) as a browser shows it: headless Chromium renders a module page and the guides."""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest
from lxml import html

from releaselib import BIN, ROOT, isolated_env, run

SITE = os.path.join(ROOT, ".build", "docs", "build", "html")
SHOTS = os.path.join(ROOT, ".build", "screenshots")
MODULE = "domain"


def chromium(*args: str) -> str:
    """Headless Chromium (Debian's package); stdout. --no-sandbox: it runs as root here."""
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (scripts/setup-host.sh installs it)"
    proc = run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args], timeout=120)
    return proc.stdout


def page(name: str) -> str:
    path = os.path.join(SITE, name)
    if not os.path.isfile(path):
        pytest.fail("%s is missing: the docs site is built by `make docs`" % path)
    return "file://" + path


def rendered(name: str) -> html.HtmlElement:
    """The page's DOM after Chromium loaded it (scripts and all), not the file on disk."""
    return html.fromstring(chromium("--dump-dom", page(name)))


def section(dom: html.HtmlElement, sid: str) -> html.HtmlElement:
    found = dom.xpath('//section[@id="%s"]' % sid)
    assert found, "no %s section on the page" % sid
    return found[0]


def test_module_page_has_every_option_in_its_table_and_its_examples() -> None:
    doc = json.loads(run([os.path.join(BIN, "ansible-doc"), "--json", "hypervisor.libvirt." + MODULE],
                         env=isolated_env(os.path.join(ROOT, ".build", "collections"))).stdout)
    spec = doc["hypervisor.libvirt." + MODULE]
    dom = rendered("%s_module.html" % MODULE)
    assert ("hypervisor.libvirt.%s module" % MODULE) in dom.findtext(".//h1")
    table = section(dom, "parameters").xpath('.//table[contains(@class, "ansible-option-table")]')
    assert table, "the Parameters section has no option table"
    shown = {s.text_content().strip() for s in table[0].xpath('.//p[contains(@class, "ansible-option-title")]/strong')}
    assert set(spec["doc"]["options"]) <= shown, set(spec["doc"]["options"]) - shown
    examples = section(dom, "examples").xpath('.//div[contains(@class, "highlight")]//pre')
    assert examples, "the Examples section shows no code"
    code = examples[0].text_content()
    assert "hypervisor.libvirt.%s:" % MODULE in code
    # the first task of EXAMPLES, as written in the module
    first_task = next(line.strip() for line in spec["examples"].splitlines() if line.strip().startswith("- name:"))
    assert first_task in code


def png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path
    return struct.unpack(">II", head[16:24])


def test_module_page_screenshot_shows_a_page_not_a_blank() -> None:
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    os.makedirs(SHOTS, exist_ok=True)
    shot = os.path.join(SHOTS, "%s_module.png" % MODULE)
    if os.path.exists(shot):
        os.unlink(shot)
    chromium("--window-size=1280,2400", "--screenshot=%s" % shot, page("%s_module.html" % MODULE))
    assert png_size(shot) == (1280, 2400)
    assert os.path.getsize(shot) > 100_000, "a page of text and tables compresses to more than this"
    pixels = matplotlib.image.imread(shot)
    colours = {tuple(p) for p in pixels[::8, ::8, :3].reshape(-1, 3).round(2).tolist()}
    assert len(colours) > 50, "the screenshot is nearly one colour (%d)" % len(colours)


def test_guides_and_plugin_pages_are_linked_from_the_index() -> None:
    dom = rendered("index.html")
    links = {a.get("href", "").split("#")[0] for a in dom.xpath("//a")}
    for target in ["docsite/guide_getting_started.html", "docsite/guide_fleet_facts.html",
                   "docsite/guide_performance.html", "host_facts_module.html", "domain_module.html",
                   "guest_role.html", "hypervisor_role.html"]:
        assert target in links, "index.html does not link %s" % target


def test_performance_page_shows_the_figures_and_the_command() -> None:
    dom = rendered("docsite/guide_performance.html")
    figures = {os.path.basename(src): src for src in dom.xpath("//img/@src")}
    for name in ("host_facts.png", "domain.png"):
        assert name in figures, figures
        # a drawn figure, not a placeholder
        assert os.path.getsize(os.path.normpath(os.path.join(SITE, "docsite", figures[name]))) > 10_000, name
    text = dom.text_content()
    assert "benchmarks/plots.py --recorded" in text
    assert "benchmarks/host_facts/run.py" in text and "benchmarks/domain/run.sh" in text
