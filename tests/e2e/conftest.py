"""End-to-end fixtures: a throw-away copy of the project, trained once per test session.

Runs go through the real ``kedro`` command in a subprocess (as a user would), in a copy of
the project under a temporary folder, so the repository's data/ and mlflow.db stay untouched.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
          "07_model_output", "08_reporting"]
# Short but real: the embedded data, a few epochs, the fast baselines.
TRAINING_PARAMS = "train.max_epochs=3,train.enable_progress_bar=false,baselines.methods=none+gene_mean+knn"


def project_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KEDRO_DISABLE_TELEMETRY="true", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
               PYTHONUNBUFFERED="1", HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "home" / ".config"),
               XDG_CACHE_HOME=str(tmp / "home" / ".cache"))
    (tmp / "home").mkdir(exist_ok=True)
    return env


def make_project_copy(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "src").mkdir()
    for layer in LAYERS:
        (dest / "data" / layer).mkdir(parents=True)
    return dest


def kedro(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kedro", *args], cwd=project, env=project_env(project),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def free_port() -> int:
    """A free port below 49152: kedro-viz refuses higher ones, where the OS's ephemeral ports often lie."""
    for port in random.Random().sample(range(20000, 49000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 49000")


def wait_for(url: str, timeout: float, server: "Server | None" = None) -> None:
    """Poll ``url`` until it answers 200; give up at once if ``server`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited ({server.proc.returncode}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s" + (f":\n{server.log_tail()}" if server else ""))


class Server:
    """A server process in its own process group, stopped with everything it started."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the group, up to 20 s for the server to exit, then SIGKILL to whatever is left of it
        (the MLflow server's job consumers can outlive it)."""
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        self._log.close()


def screenshot(url: str, out: Path, tmp: Path, size: str = "1400,900") -> Path:
    """Headless Chromium screenshot of ``url`` (skips the test when Chromium is not installed)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size}",
            "--virtual-time-budget=15000", f"--screenshot={out}", url]
    result = subprocess.run(args, env=project_env(tmp), capture_output=True, text=True, timeout=180,
                            stdin=subprocess.DEVNULL)
    assert out.exists(), f"chromium wrote no screenshot: {result.stderr[-2000:]}"
    return out


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Path:
    """The project copy after ``kedro run --pipelines=training`` on the embedded data."""
    project = make_project_copy(tmp_path_factory.mktemp("project"))
    result = kedro(project, "run", "--pipelines=training", f"--params={TRAINING_PARAMS}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return project
