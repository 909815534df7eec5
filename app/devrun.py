"""`make run`: the whole system on embedded defaults, under honcho.

Uses REDIS_URL when set; otherwise adds the bundled redis-server (data under instance/)
as one more honcho process, so Ctrl-C stops it with everything else. Seeds the SQLite
database with demo data on first run.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from app.config import PROJECT_ROOT, instance_dir

EMBEDDED_REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", "6390"))
DEV_ADMIN_USER = "admin"


def dev_secret(path: Path) -> str:
    """A random secret kept under instance/ (owner-only) so restarts keep sessions and tokens."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def dev_credentials(env: dict[str, str], folder: Path) -> str:
    """Fill in the secrets the ops surface refuses to serve without; returns what to tell the user."""
    made = []
    for key, default in (
        ("SECRET_KEY", lambda: dev_secret(folder / "dev-secret-key")),
        ("ADMIN_TOKEN", lambda: dev_secret(folder / "dev-admin-token")),
        ("ADMIN_USER", lambda: DEV_ADMIN_USER),
        ("ADMIN_PASSWORD", lambda: dev_secret(folder / "dev-admin-password")),
    ):
        if not env.get(key):
            env[key] = default()
            made.append(key)
    if not {"ADMIN_TOKEN", "ADMIN_USER", "ADMIN_PASSWORD"} & set(made):
        return "Ops credentials: from your environment.\n"
    return (
        f"Ops login: user {env['ADMIN_USER']!r}, password {env['ADMIN_PASSWORD']!r}; "
        f"API: Authorization: Bearer {env['ADMIN_TOKEN']} (dev values kept under {folder})\n"
    )


def main() -> int:
    folder = instance_dir()
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    procfile = (PROJECT_ROOT / "Procfile").read_text()
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
        redis_dir = folder / "redis"
        procfile = (
            f"redis: {sys.executable} -m app.embedded_redis --port {EMBEDDED_REDIS_PORT} "
            f"--dir {redis_dir}\n" + procfile
        )
    credentials = dev_credentials(env, folder)
    web = f"http://{env.setdefault('WEB_HOST', '127.0.0.1')}:{env.setdefault('WEB_PORT', '8000')}/"
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    # First run: tables and demo data; later runs keep what is there.
    subprocess.run([*flask, "demo", "seed", "--if-empty"], env=env, check=True, cwd=PROJECT_ROOT)
    generated = folder / "Procfile.run"
    generated.write_text(procfile)
    sys.stdout.write(
        f"Cronwork: web at {web} (health: {web}healthz), Redis at {env['REDIS_URL']}\n"
        f"{credentials}"
        "Ctrl-C stops every process.\n"
    )
    sys.stdout.flush()
    honcho = [sys.executable, "-m", "honcho", "-f", str(generated), "-d", str(PROJECT_ROOT), "start"]
    os.execve(sys.executable, honcho, env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
