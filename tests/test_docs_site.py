"""The documentation site builds warning-free (``sphinx-build -W``), with the tutorial executed, and what it
shows is real: every page built, the API reference generated from the docstrings, the parameters page
rendered from the schema, no broken internal link, and (browser) the site opens in a headless Chromium.

The build runs once per module in a copy of ``docs/`` (autosummary writes its stub pages into the source
folder), about 1.5-2 minutes on 2 CPU cores, most of it the tutorial's training. ``SCGAPFILL_DOCS_EXECUTE=off``
builds without executing the notebook (about 25 s); the checks of the executed tutorial are then skipped.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

for module in ("sphinx", "myst_nb", "sphinx_book_theme"):
    pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[docs]' (part of '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Not sources: the extension's code, what a build leaves, notebook checkpoints.
NOT_PAGES = ("_build", "_ext", "generated", "jupyter_execute", ".ipynb_checkpoints")

pytestmark = pytest.mark.slow


@dataclass
class Site:
    html: Path
    sources: Path
    executed: bool
    seconds: float


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    work = tmp_path_factory.mktemp("docs-site")
    shutil.copytree(DOCS, work / "docs",
                    ignore=shutil.ignore_patterns("_build", "generated", "jupyter_execute", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "README.md", work / "README.md")  # the pages include parts of it
    for name in ("src", "conf"):  # the package documented, and the yml the parameters page reads
        (work / name).symlink_to(ROOT / name)
    execute = os.environ.get("SCGAPFILL_DOCS_EXECUTE", "force")
    env = dict(os.environ, SCGAPFILL_DOCS_EXECUTE=execute, PYTHONUNBUFFERED="1",
               KEDRO_DISABLE_TELEMETRY="true", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
               # the notebook's kernel imports the package from this checkout, as the tests do
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    out = work / "html"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-b", "html", "-d", str(work / "doctrees"),
         str(work / "docs"), str(out)],
        cwd=work, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - start
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return Site(out, work / "docs", execute != "off", seconds)


def _pages(sources: Path) -> list[Path]:
    return sorted(p.relative_to(sources) for p in sources.rglob("*")
                  if p.suffix in (".md", ".ipynb") and not set(p.relative_to(sources).parts) & set(NOT_PAGES))


def test_every_page_is_built(site: Site) -> None:
    pages = _pages(site.sources)
    assert {Path("index.md"), Path("tutorial.ipynb"), Path("parameters.md"), Path("api.md"),
            Path("results/2026-12-07-benchmark-history.md")} <= set(pages)
    for page in pages:
        built = site.html / page.with_suffix(".html")
        assert built.exists(), f"{page} was not built"
        assert "<h1>" in built.read_text(), f"{built.name} has no title"
    # -W makes a page left out of every toctree an error; the navigation lists the sections.
    index = (site.html / "index.html").read_text()
    for target in ("getting-started.html", "tutorial.html", "howto/own-data.html", "parameters.html", "api.html",
                   "benchmark.html", "results/index.html", "contributing.html"):
        assert f'href="{target}"' in index, target


def test_api_reference_documents_gapfill_fit_from_its_docstring(site: Site) -> None:
    import scgapfill

    page = (site.html / "generated" / "scgapfill.GapFill.html").read_text()
    for method in ("fit", "impute", "save", "load"):
        assert f'id="scgapfill.GapFill.{method}"' in page, method
    first_line = inspect.getdoc(scgapfill.GapFill.fit).splitlines()[0]  # "Train on the raw counts of ``adata``."
    assert _text(first_line.replace("``", ""), tags="") in _text(page, tags="")
    for name in ("scgapfill.impute", "scgapfill.eval.denoising.denoising_scores", "scgapfill.eval.metrics.heldout_scores",
                 "scgapfill.eval.baselines.run_baseline"):
        assert (site.html / "generated" / f"{name}.html").exists(), name


def _text(markup: str, tags: str = " ") -> str:
    """The text of some HTML, whitespace collapsed; ``tags`` is what each tag becomes."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", tags, markup)).split())


def _rows(page: str) -> dict[str, list[str]]:
    """The parameters tables: row id -> the text of each cell."""
    rows = {}
    for match in re.finditer(r'<tr[^>]*\bid="(param-[^"]+)"[^>]*>(.*?)</tr>', page, flags=re.S):
        rows[match[1]] = [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", match[2], flags=re.S)]
    return rows


def _fields(model: type, prefix: str) -> dict[str, object]:
    from pydantic import BaseModel

    out = {}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.update(_fields(field.annotation, f"{prefix}.{name}"))
        else:
            out[f"{prefix}.{name}"] = field.default
    return out


def test_parameters_page_lists_every_field_with_the_schema_default(site: Site) -> None:
    from scgapfill.params import SECTIONS, TrainParams

    rows = _rows((site.html / "parameters.html").read_text())
    keys = {cells[0]: cells for cells in rows.values()}
    for section, model in SECTIONS.items():
        for key in _fields(model, section):
            assert key in keys, f"{key} is not on the parameters page"
    # The default shown is the schema's, read at build time.
    batch_size = keys["train.batch_size"]
    assert batch_size[2].split(";")[0] == str(TrainParams.model_fields["batch_size"].default)
    assert batch_size[1].startswith("int")
    # A setting decided at run time (here by train.budget) shows auto, as the yml writes it.
    assert keys["train.max_epochs"][2].split(";")[0] == "auto"
    assert keys["impute.scale"][1] == "composition | observed_library"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        for name in ("href", "src"):
            if values.get(name) and tag in ("a", "img", "link", "script"):
                self.links.append(values[name])


def test_no_broken_internal_link(site: Site) -> None:
    parsed: dict[Path, _Links] = {}

    def parse(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _Links()
            parsed[path].feed(path.read_text(errors="replace"))
        return parsed[path]

    broken = []
    for page in sorted(site.html.rglob("*.html")):
        if page.relative_to(site.html).parts[0] in ("_static", "_sources"):
            continue  # the theme's own templates, not pages
        for link in parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(site.html)}: {link}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse(target).ids:
                broken.append(f"{page.relative_to(site.html)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


def test_tutorial_is_executed_with_its_pictures(site: Site) -> None:
    if not site.executed:
        pytest.skip("SCGAPFILL_DOCS_EXECUTE=off: the notebook was not executed")
    page = (site.html / "tutorial.html").read_text()
    found = re.search(r"held-out Pearson r: (-?[0-9.]+) over ([0-9]+) hidden counts", page)
    assert found, "the held-out check printed nothing"
    assert 0.3 < float(found[1]) <= 1 and int(found[2]) > 1000
    # loss curve, held-out scatter, UMAP before/after, one gene before/after
    assert len(re.findall(r"<img[^>]+src=\"[^\"]+\.png\"", page)) >= 4
    assert "'method': 'scgapfill-unet'" in html.unescape(page)


@pytest.mark.browser
def test_site_opens_in_chromium_and_its_navigation_resolves(site: Site, tmp_path: Path) -> None:
    from e2e.conftest import Server, free_port, project_env, screenshot, wait_for

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    port = free_port()
    env = project_env(tmp_path)
    server = Server([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                     str(site.html)], tmp_path, env, tmp_path / "http.log")
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for(base + "index.html", timeout=60, server=server)
        profile = tmp_path / "chromium-profile"
        profile.mkdir()
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", "--dump-dom", base + "index.html"],
            env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        ).stdout
        assert "scgapfill" in dom and "bd-sidenav" in dom, "Chromium did not render the index page"
        nav = dom.split("bd-sidenav", 1)[1].split("</nav>", 1)[0]
        targets = sorted({urljoin(base + "index.html", href) for href in re.findall(r'href="([^"#]+)', nav)})
        assert len(targets) >= 15, targets
        for url in targets:
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200, url
        from PIL import Image

        image = Image.open(screenshot(base + "tutorial.html", tmp_path / "tutorial.png", tmp_path)).convert("L")
        low, high = image.getextrema()
        assert high - low > 100, "the screenshot is blank"
    finally:
        server.stop()
