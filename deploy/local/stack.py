"""``make run``: the whole Ferry stack on one machine, in one terminal; Ctrl-C stops it.

Starts the moto server (S3, SQS, DynamoDB, Secrets Manager, KMS, STS, EventBridge, Step
Functions executing state machines), a local
SFTP server (OpenSSH's sshd as root, otherwise asyncssh's), migrates a fresh SQLite database
(or the PostgreSQL in DATABASE_URL), bootstraps the AWS resources, seeds a demo tenant and
admin, then runs the API and admin (gunicorn), and per simulated region a Celery worker,
celery beat, the region keeper, the S3 event consumer and, with FERRY_ORCHESTRATOR=stepfunctions
(the default), the Step Functions step consumer (``manage.py run_steps``). Writes what to use to
``.local/stack.env``.

Ports (env): FERRY_API_PORT (8800), FERRY_MOTO_PORT (8801), FERRY_SFTP_PORT (8822).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy.local import services
from deploy.local.supervise import Supervisor

ROOT = services.ROOT
LOCAL = ROOT / ".local"
PY = sys.executable


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([PY, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    return result.stdout


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()  # noqa: S310 - our own http:// URL
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def _webhook_tls(folder: Path) -> dict[str, str]:
    """A CA and a loopback certificate for the demo webhook receiver (made with trustme,
    a development requirement): paths as stack.env values."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {
        "FERRY_DEMO_WEBHOOK_CA": str(paths["ca"]),
        "FERRY_DEMO_WEBHOOK_CERT": str(paths["cert"]),
        "FERRY_DEMO_WEBHOOK_KEY": str(paths["key"]),
    }


def main() -> None:
    LOCAL.mkdir(exist_ok=True)
    logs = LOCAL / "logs"
    logs.mkdir(exist_ok=True)
    regions = os.environ.get("FERRY_REGIONS", "us-east-1,us-west-2").split(",")
    api_port = _port("FERRY_API_PORT", 8800)
    moto_port = _port("FERRY_MOTO_PORT", 8801)
    sftp_port = _port("FERRY_SFTP_PORT", 8822)
    for port, name in ((api_port, "FERRY_API_PORT"), (moto_port, "FERRY_MOTO_PORT"), (sftp_port, "FERRY_SFTP_PORT")):
        try:
            services.wait_for_port(port, timeout=0.2)
        except services.ServiceError:
            continue
        raise SystemExit(f"port {port} is taken; set {name} to another port")

    infrastructure: list[services.Process] = []  # the emulator and the SFTP server
    # Ferry's own processes: one that exits is started again (deploy/local/supervise.py).
    ferry = Supervisor(say=lambda line: print(line, flush=True))

    def stop_all(*_args) -> None:
        # Ferry's processes first, while the emulator and the SFTP server still answer: a
        # keeper stopping releases its leases, and nothing logs a refused connection.
        services.stop_together(list(reversed(ferry.processes())))
        services.stop_together(list(reversed(infrastructure)))

    # Ctrl-C even when started from a shell that ignores SIGINT in the background.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    try:
        # The emulator keeps nothing, so neither does the database: start both fresh.
        moto = services.start_moto(port=moto_port, log_path=logs / "moto.log")
        infrastructure.append(moto.process)
        env = {
            **os.environ,
            **moto.env(),
            "FERRY_PROFILE": os.environ.get("FERRY_PROFILE", "local"),
            "FERRY_REGIONS": ",".join(regions),
            # The simulated Aurora writer: the other region's processes run on a forwarded-
            # style connection that refuses what write forwarding refuses (docs/deploy.md).
            "FERRY_DATABASE_WRITER_REGION": os.environ.get("FERRY_DATABASE_WRITER_REGION", regions[0]),
            "FERRY_NETGUARD_ALLOW": os.environ.get("FERRY_NETGUARD_ALLOW", "127.0.0.0/8,::1/128"),
            # A transfer's progress (the API's `progress`, `ferry transfers watch`) moves with
            # each heartbeat: every 2 s here rather than production's 15 s, so the bar is live.
            "FERRY_HEARTBEAT_INTERVAL": os.environ.get("FERRY_HEARTBEAT_INTERVAL", "2"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("AWS_CA_BUNDLE", None)
        # The demo webhook receiver's certificate, from a CA the stack's processes trust
        # (deploy/local/demo-notify.sh): webhooks are HTTPS only, verified.
        webhook_tls = _webhook_tls(LOCAL / "webhooks")
        env.setdefault("FERRY_WEBHOOK_CA_BUNDLE", webhook_tls["FERRY_DEMO_WEBHOOK_CA"])
        if not os.environ.get("DATABASE_URL"):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{LOCAL / 'ferry.sqlite3'}{suffix}").unlink(missing_ok=True)
        print("migrating and bootstrapping the emulator …", flush=True)
        # DDL only where the writer is: a forwarded connection refuses it.
        _manage({**env, "FERRY_REGION": env["FERRY_DATABASE_WRITER_REGION"]}, "migrate", "--noinput")
        _manage(env, "bootstrap_aws")
        seed = json.loads(_manage(env, "seed_demo").strip().splitlines()[-1])

        sftp = _start_sftp(sftp_port)
        infrastructure.append(sftp["process"])

        api_url = f"http://127.0.0.1:{api_port}"
        ferry.spawn(
            [
                str(services.VENV_BIN / "gunicorn"),
                "controlplane.wsgi:application",
                "--bind",
                f"127.0.0.1:{api_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--error-logfile",
                "-",
            ],
            name="api",
            env={**env, "FERRY_REGION": regions[0]},
            log_path=logs / "api.log",
        )
        celery = [PY, "-m", "celery", "-A", "controlplane.celery"]
        metrics_base = _port("FERRY_METRICS_BASE_PORT", 9100)
        metrics_ports: dict[str, int] = {}
        for index, region in enumerate(regions):
            region_env = {**env, "FERRY_REGION": region}
            processes = {
                "worker": [*celery, "worker", "-c", "2", "-n", f"worker-{region}@%h", "-l", "INFO",
                           "--without-mingle", "--without-gossip", "--without-heartbeat"],
                "beat": [*celery, "beat", "-l", "INFO", "--schedule", str(LOCAL / f"beat-{region}")],
                "keeper": [PY, str(ROOT / "manage.py"), "run_keeper"],
                "events": [PY, str(ROOT / "manage.py"), "consume_events"],
            }  # fmt: skip
            if env.get("FERRY_ORCHESTRATOR", "stepfunctions") == "stepfunctions":
                # The local profile's default: each transfer is a Step Functions execution on
                # the emulator, whose steps this region's step consumer runs (docs/execution.md).
                processes["steps"] = [PY, str(ROOT / "manage.py"), "run_steps"]
            for offset, (name, command) in enumerate(processes.items(), start=1):
                port = metrics_base + 10 * index + offset
                metrics_ports[f"{name}-{region}"] = port
                process_env = {**region_env, "FERRY_METRICS_PORT": str(port)}
                if name == "worker":
                    # The pool's children count; the worker's parent serves their sum.
                    folder = LOCAL / "metrics" / region
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir(parents=True)
                    process_env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
                ferry.spawn(command, name=f"{name}-{region}", env=process_env, log_path=logs / f"{name}-{region}.log")
        _wait_http(f"{api_url}/healthz")

        values = {
            "FERRY_API_URL": api_url,
            "FERRY_API_KEY": seed["api_key"],
            "FERRY_ADMIN_URL": f"{api_url}/admin/",
            "FERRY_ADMIN_USER": seed["admin_user"],
            "FERRY_ADMIN_PASSWORD": seed["admin_password"],
            "FERRY_ADMIN_TOTP_URI": seed["admin_totp_uri"],
            **command_env(env, regions[0]),
            "FERRY_DEMO_SFTP_HOST": "127.0.0.1",
            "FERRY_DEMO_SFTP_PORT": str(sftp_port),
            "FERRY_DEMO_SFTP_USER": sftp["user"],
            "FERRY_DEMO_SFTP_PASSWORD": sftp["password"],
            "FERRY_DEMO_SFTP_ROOT": sftp["root"],
            "FERRY_DEMO_SFTP_HOST_KEY": sftp["pin"],
            "FERRY_DEMO_BUCKET": seed["bucket"],
            **webhook_tls,
        }
        write_stack_env(LOCAL / "stack.env", values)
        print(_banner(values, logs, regions, sftp["server"]), flush=True)
        print(
            "  metrics    " + ", ".join(f"{name} :{port}" for name, port in metrics_ports.items()) + "\n",
            flush=True,
        )
        writer = env["FERRY_DATABASE_WRITER_REGION"]
        forwarded = [region for region in regions if region != writer]
        print(
            f"  database   writer {writer}; {', '.join(forwarded) or 'no region'} on a forwarded-style "
            "connection (refuses what Aurora write forwarding refuses)\n",
            flush=True,
        )
        print(
            "  restarts   a Ferry process that exits is started again, and said so here and in its log\n",
            flush=True,
        )
        while True:
            # Without the emulator or the SFTP server nothing works, and a restarted emulator
            # would be empty: those stop the stack. Ferry's own processes are restarted.
            for process in infrastructure:
                if process.proc.poll() is not None:
                    raise SystemExit(f"{process.name} exited ({process.proc.returncode}); see {process.log_path}")
            ferry.check()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
    finally:
        stop_all()


# What a `manage.py` command run beside the stack needs to act on it (README, "API in one
# minute"): the profile, the regions, the database and the emulator with its credentials.
COMMAND_ENV_KEYS = (
    "FERRY_PROFILE",
    "FERRY_REGIONS",
    "FERRY_DATABASE_WRITER_REGION",
    "FERRY_NETGUARD_ALLOW",
    "DATABASE_URL",
    *services.EMULATOR_ENV,
    "AWS_ENDPOINT_URL",
)


def command_env(env: dict[str, str], region: str) -> dict[str, str]:
    """The variables `.local/stack.env` gives a shell so that `manage.py` acts on this stack,
    in ``region``, and never on real AWS (the local profile refuses any other endpoint)."""
    return {"FERRY_REGION": region, **{k: env[k] for k in COMMAND_ENV_KEYS if env.get(k)}}


def write_stack_env(path: Path, values: dict[str, str]) -> None:
    """A file a shell can ``source``; only its owner reads it (it holds the demo's logins)."""
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
    path.chmod(0o600)


def _start_sftp(port: int) -> dict:
    """OpenSSH's sshd when we are root and it is installed, else asyncssh's server."""
    workdir = LOCAL / "sftp"
    if os.getuid() == 0 and Path(services.SSHD).exists() and shutil.which("ssh-keygen"):
        shutil.rmtree(workdir, ignore_errors=True)
        sshd = services.start_sshd(workdir, port=port)
        return {
            "process": sshd.process,
            "user": sshd.password_user,
            "password": sshd.password,
            "root": str(sshd.data_dir),
            "pin": sshd.pin,
            "server": "OpenSSH sshd",
        }
    import secrets

    from engine.hostkeys import pin_of

    password = secrets.token_urlsafe(12)
    user = os.environ.get("USER", "demo")
    process = services.start_asyncssh_sftp(workdir, port=port, username=user, password=password)
    import asyncssh

    key = asyncssh.read_public_key(str(workdir / "host_ed25519.pub"))
    return {
        "process": process,
        "user": user,
        "password": password,
        "root": str(workdir / "data"),
        "pin": pin_of(key),
        "server": "asyncssh (OpenSSH's sshd needs root)",
    }


def _banner(values: dict[str, str], logs: Path, regions: list[str], sftp_server: str) -> str:
    return f"""
Ferry is running ({len(regions)} regions: {", ".join(regions)}). Ctrl-C stops everything.

  API        {values["FERRY_API_URL"]}   (docs: {values["FERRY_API_URL"]}/api/docs/)
  admin      {values["FERRY_ADMIN_URL"]}  user {values["FERRY_ADMIN_USER"]}  password {values["FERRY_ADMIN_PASSWORD"]}
             then a TOTP code (MFA): .venv/bin/python manage.py totp_code {values["FERRY_ADMIN_USER"]}
             or add this device to an authenticator app: {values["FERRY_ADMIN_TOTP_URI"]}
  API key    {values["FERRY_API_KEY"]}
  emulator   {values["AWS_ENDPOINT_URL"]}   demo bucket {values["FERRY_DEMO_BUCKET"]}
  SFTP       {values["FERRY_DEMO_SFTP_USER"]}@127.0.0.1:{values["FERRY_DEMO_SFTP_PORT"]} ({sftp_server})
             files in {values["FERRY_DEMO_SFTP_ROOT"]}, host key {values["FERRY_DEMO_SFTP_HOST_KEY"]}
  logs       {logs}/

Everything above is in .local/stack.env. In another terminal:

  source .local/stack.env
  curl "$FERRY_API_URL/healthz"
  curl -H "Authorization: Bearer $FERRY_API_KEY" "$FERRY_API_URL/api/v1/tenant"
  .venv/bin/python manage.py regions status
"""


if __name__ == "__main__":
    main()
