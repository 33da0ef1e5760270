"""The ``ferry`` commands (typer). Each command is a few lines over :mod:`ferry_cli.client`
and :mod:`ferry_cli.output`; docs/cli.md has one example per command.

Exit codes: 0 done; 1 the API refused or failed, it could not be reached, the
configuration is missing, or the thing waited for ended badly (a ``dead`` transfer, a
failed connection test); 2 a usage error (a missing or unknown option).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ferry_cli import __version__, config, output
from ferry_cli.client import ApiError, Client, NetworkError, split_location

app = typer.Typer(
    name="ferry",
    help="Ferry's command-line client: endpoints, routes and transfers over Ferry's API.\n\n"
    "The API key comes from FERRY_API_KEY or the config file `ferry login` writes; "
    "the URL from FERRY_API_URL or that file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
endpoints_app = typer.Typer(help="SFTP servers and S3 buckets Ferry moves files between.", no_args_is_help=True)
add_app = typer.Typer(help="Register an endpoint.", no_args_is_help=True)
routes_app = typer.Typer(help="Routes: which files go where, and when.", no_args_is_help=True)
transfers_app = typer.Typer(help="Transfers: one file's journey, its progress and timeline.", no_args_is_help=True)
app.add_typer(endpoints_app, name="endpoints")
endpoints_app.add_typer(add_app, name="add")
app.add_typer(routes_app, name="routes")
app.add_typer(transfers_app, name="transfers")
keys_app = typer.Typer(help="API keys: list them, rotate one with an overlap.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]
Interval = Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls while waiting.")]
Options = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help="A route/transfer option (docs/transfers.md), e.g. -o max_attempts=3 -o stable_polls=false; "
        "the value is read as JSON when it parses, else as text.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ferry {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    api_key: Annotated[str | None, typer.Option("--api-key", hidden=True)] = None,
) -> None:
    # A key on the command line would land in shell history and `ps`: refused, with a pointer.
    if api_key is not None:
        output.err().print("The API key is never taken from the command line: set FERRY_API_KEY or run `ferry login`.")
        raise typer.Exit(2)


@contextmanager
def session(as_json: bool = False) -> Iterator[Client]:
    """A client for the configured API; every API, network or config error is printed
    cleanly (with the request id when the API gave one) and exits 1."""
    try:
        settings = config.load()
        client = Client(settings.url, settings.api_key)
        try:
            yield client
        finally:
            client.close()
    except ApiError as exc:
        output.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None
    except (NetworkError, config.ConfigError) as exc:
        if as_json:
            code = "unreachable" if isinstance(exc, NetworkError) else "config"
            output.print_error(ApiError(0, code, str(exc)), as_json=True)
        else:
            output.err().print(Text.assemble(("Error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None


def _usage(message: str) -> typer.BadParameter:
    return typer.BadParameter(message)


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["max_attempts=3", "after_delivery={\"move_to\": \"/a\"}"]`` → a dict (JSON values)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise _usage(f"{pair!r}: use KEY=VALUE")
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    return options


def _location(text: str, what: str) -> tuple[str, str]:
    try:
        return split_location(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=what) from None


def _secret(env_name: str, prompt: str) -> str:
    """A secret from the environment, else a hidden prompt; never an argument."""
    value = os.environ.get(env_name)
    if value:
        return value
    return str(typer.prompt(prompt, hide_input=True))


# --- login ----------------------------------------------------------------------------------


@app.command()
def login(
    url: Annotated[str | None, typer.Option("--url", help="The API's base URL (else asked).")] = None,
) -> None:
    """Ask for the API URL and key (hidden), check them, and write the config file (0600)."""
    current = {}
    try:
        current = config.read_file()
    except config.ConfigError:
        current = {}
    if url is None:
        url = str(
            typer.prompt(
                "Ferry API URL", default=os.environ.get("FERRY_API_URL") or current.get("url") or config.DEFAULT_URL
            )
        )
    key = str(typer.prompt("API key", hide_input=True)).strip()
    if not key:
        raise _usage("an API key is required")
    client = Client(url, key)
    try:
        tenant = client.get("tenant")
    except ApiError as exc:
        output.print_error(exc)
        raise typer.Exit(1) from None
    except NetworkError as exc:
        output.err().print(Text.assemble(("Error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    finally:
        client.close()
    path = config.write_file(url=url.rstrip("/"), api_key=key)
    typer.echo(f"Logged in to {url} as tenant {tenant['name']} ({tenant['key']['scope']} key); wrote {path}")


@app.command()
def whoami(as_json: Json = False) -> None:
    """The tenant and key scope the configured key belongs to."""
    with session(as_json) as api:
        tenant = api.get("tenant")
        if as_json:
            output.emit_json(tenant)
        else:
            typer.echo(f"{tenant['name']} ({tenant['id']}), {tenant['key']['scope']} key {tenant['key']['prefix']}")


# --- endpoints ----------------------------------------------------------------------------


@endpoints_app.command("list")
def endpoints_list(
    kind: Annotated[str | None, typer.Option("--kind", help="sftp or s3.")] = None,
    as_json: Json = False,
) -> None:
    """List the endpoints, newest first."""
    with session(as_json) as api:
        rows = list(api.pages("endpoints", kind=kind))
        if as_json:
            output.emit_json(rows)
            return
        output.table(
            ["ID", "NAME", "KIND", "WHERE", "CREATED"],
            ([e["id"], e["name"], e["kind"], _where(e), output.short_time(e["created_at"])] for e in rows),
        )


def _where(endpoint: dict[str, Any]) -> str:
    c = endpoint.get("config") or {}
    if endpoint["kind"] == "sftp":
        return f"sftp://{c.get('username')}@{c.get('host')}:{c.get('port')}{c.get('root', '')}"
    return f"s3://{c.get('bucket')}/{c.get('prefix', '')}"


@endpoints_app.command("scan")
def endpoints_scan(
    host: Annotated[str, typer.Argument(help="The SFTP server's host name or address.")],
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 22,
    as_json: Json = False,
) -> None:
    """Fetch an SFTP server's host keys (as pins for `endpoints add sftp --host-key`)."""
    with session(as_json) as api:
        found = api.post("host-keys/scan", {"host": host, "port": port})
        if as_json:
            output.emit_json(found)
            return
        typer.echo(f"{found['host']}:{found['port']} ({found['address']}) presents:")
        for pin in found["host_keys"]:
            typer.echo(f"  {pin}")
        typer.echo("Compare these with the fingerprints your server's administrator gives you (ssh-keygen -l).")


@add_app.command("sftp")
def add_sftp(
    name: Annotated[str, typer.Argument(help="A name, unique in your tenant.")],
    host: Annotated[str, typer.Option("--host", help="Host name or address.")],
    username: Annotated[str, typer.Option("--username", "-u")],
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 22,
    root: Annotated[str, typer.Option("--root", help="The folder every path is relative to.")] = "/",
    host_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--host-key",
            help='A pin "<type> SHA256:<fingerprint>" (repeatable). Without one, the server is scanned '
            "and you confirm what it presents.",
        ),
    ] = None,
    private_key_file: Annotated[
        Path | None, typer.Option("--private-key-file", exists=True, dir_okay=False, help="An SSH private key file.")
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Log in with a password: from FERRY_SFTP_PASSWORD, else asked.")
    ] = False,
    passphrase: Annotated[
        bool, typer.Option("--passphrase", help="The key's passphrase: from FERRY_SFTP_PASSPHRASE, else asked.")
    ] = False,
    max_connections: Annotated[int | None, typer.Option("--max-connections", min=1, max=32)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Trust the scanned host keys without asking.")] = False,
    as_json: Json = False,
) -> None:
    """Register an SFTP server (credentials go to Ferry's secret store, never back out)."""
    if private_key_file is None and not password:
        raise _usage("give --private-key-file and/or --password")
    credentials: dict[str, str] = {}
    if private_key_file is not None:
        credentials["private_key"] = private_key_file.read_text()
        if passphrase:
            credentials["passphrase"] = _secret("FERRY_SFTP_PASSPHRASE", "Key passphrase")
    if password:
        credentials["password"] = _secret("FERRY_SFTP_PASSWORD", "SFTP password")
    with session(as_json) as api:
        pins = list(host_keys or [])
        if not pins:
            found = api.post("host-keys/scan", {"host": host, "port": port})
            pins = list(found["host_keys"])
            err = output.err()
            err.print(f"{found['host']}:{found['port']} ({found['address']}) presents:")
            for pin in pins:
                err.print(f"  {pin}")
            if not yes and not typer.confirm("Trust these host keys?", err=True):
                raise typer.Exit(1)
        cfg: dict[str, Any] = {"host": host, "port": port, "username": username, "root": root, "host_keys": pins}
        if max_connections is not None:
            cfg["max_connections"] = max_connections
        created = api.post("endpoints", {"name": name, "kind": "sftp", "config": cfg, "credentials": credentials})
        _show_endpoint(created, as_json)


@add_app.command("s3")
def add_s3(
    name: Annotated[str, typer.Argument(help="A name, unique in your tenant.")],
    bucket: Annotated[str, typer.Option("--bucket")],
    region: Annotated[str, typer.Option("--region", help="The bucket's AWS region.")],
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix every path is relative to.")] = "",
    access_key_id: Annotated[
        str | None,
        typer.Option("--access-key-id", help="With its secret from FERRY_S3_SECRET_ACCESS_KEY, else asked."),
    ] = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="A role Ferry assumes.")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id")] = None,
    sse: Annotated[str | None, typer.Option("--sse", help="AES256 or aws:kms.")] = None,
    kms_key_id: Annotated[str | None, typer.Option("--kms-key-id")] = None,
    as_json: Json = False,
) -> None:
    """Register an S3 bucket (keys, or a role to assume)."""
    if access_key_id is None and role_arn is None:
        raise _usage("give --access-key-id and/or --role-arn")
    cfg: dict[str, Any] = {"bucket": bucket, "region": region, "prefix": prefix}
    for key, value in (("role_arn", role_arn), ("external_id", external_id), ("sse", sse), ("kms_key_id", kms_key_id)):
        if value is not None:
            cfg[key] = value
    body: dict[str, Any] = {"name": name, "kind": "s3", "config": cfg}
    if access_key_id is not None:
        secret = _secret("FERRY_S3_SECRET_ACCESS_KEY", "Secret access key")
        body["credentials"] = {"access_key_id": access_key_id, "secret_access_key": secret}
    with session(as_json) as api:
        _show_endpoint(api.post("endpoints", body), as_json)


def _show_endpoint(endpoint: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.emit_json(endpoint)
    else:
        typer.echo(f"Endpoint {endpoint['name']} ({endpoint['id']}): {_where(endpoint)}")


@endpoints_app.command("test")
def endpoints_test(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name or id.")],
    as_json: Json = False,
) -> None:
    """Run the connection test; exit 1 if a check fails."""
    with session(as_json) as api:
        found = api.endpoint(endpoint)
        result = api.post(f"endpoints/{found['id']}/test")
        if as_json:
            output.emit_json(result)
        else:
            output.table(
                ["CHECK", "OK", "MS", "DETAIL"],
                (
                    [
                        c["name"],
                        Text("ok", style="green") if c["ok"] else Text("FAILED", style="red"),
                        c.get("ms", ""),
                        c.get("detail", ""),
                    ]
                    for c in result["checks"]
                ),
                title=Text(f"{found['name']}: {'ok' if result['ok'] else 'FAILED'}"),
            )
    if not result["ok"]:
        raise typer.Exit(1)


@endpoints_app.command("ssh-key")
def endpoints_ssh_key(
    endpoint: Annotated[str, typer.Argument(help="SFTP endpoint name or id.")],
    issue: Annotated[
        bool, typer.Option("--issue", help="Generate a new key pair (rotates an issued key with the overlap).")
    ] = False,
    overlap_hours: Annotated[
        int, typer.Option("--overlap-hours", min=0, max=168, help="How long the previous key is still offered.")
    ] = 24,
    as_json: Json = False,
) -> None:
    """Show the SSH public key Ferry issued for an SFTP endpoint, or issue one (--issue)."""
    with session(as_json) as api:
        found = api.endpoint(endpoint)
        path = f"endpoints/{found['id']}/ssh-key"
        key = api.post(path, {"overlap_hours": overlap_hours}) if issue else api.get(path)
        if as_json:
            output.emit_json(key)
            return
        # The public key alone on stdout: `ferry endpoints ssh-key X >> authorized_keys` works.
        typer.echo(key["public_key"])
        output.err().print(f"{key['fingerprint']}, issued {output.short_time(key['created_at'])}")
        if key.get("previous"):
            until = output.short_time(key["previous"]["valid_until"])
            output.err().print(f"The previous key ({key['previous']['fingerprint']}) is still offered until {until}.")


# --- API keys ---------------------------------------------------------------------------


@keys_app.command("list")
def keys_list(as_json: Json = False) -> None:
    """List the tenant's API keys (prefixes only, never a key)."""
    with session(as_json) as api:
        rows = list(api.pages("api-keys"))
        if as_json:
            output.emit_json(rows)
            return
        output.table(
            ["ID", "PREFIX", "SCOPE", "LABEL", "EXPIRES", "SOON", "REVOKED"],
            (
                [
                    k["id"],
                    k["prefix"],
                    k["scope"],
                    k["label"],
                    output.short_time(k["expires_at"]),
                    "yes" if k["expires_soon"] else "",
                    output.short_time(k["revoked_at"]),
                ]
                for k in rows
            ),
        )


@keys_app.command("rotate")
def keys_rotate(
    key: Annotated[str, typer.Argument(help="The key's prefix (as `keys list` shows it) or id.")],
    overlap_hours: Annotated[
        int, typer.Option("--overlap-hours", min=0, max=168, help="How long the old key keeps working.")
    ] = 24,
    as_json: Json = False,
) -> None:
    """Issue a successor of a key; the old one keeps working for the overlap. Prints the new key once."""
    with session(as_json) as api:
        match = [k for k in api.pages("api-keys") if key in (k["id"], k["prefix"]) and not k["revoked_at"]]
        if not match:
            output.err().print(f"No active API key {key!r}.")
            raise typer.Exit(1)
        rotated = api.post(f"api-keys/{match[0]['id']}/rotate", {"overlap_hours": overlap_hours})
        if as_json:
            output.emit_json(rotated)
            return
        typer.echo(rotated["key"])
        until = output.short_time(rotated["previous"]["expires_at"])
        output.err().print(f"New key {rotated['prefix']} (shown once). The old key {key} works until {until}.")


# --- routes -------------------------------------------------------------------------------


@routes_app.command("create")
def routes_create(
    name: Annotated[str, typer.Argument(help="A name, unique in your tenant.")],
    source: Annotated[str, typer.Option("--from", help="ENDPOINT:FOLDER to take files from.")],
    destination: Annotated[str, typer.Option("--to", help="ENDPOINT:FOLDER to deliver to.")],
    pattern: Annotated[str, typer.Option("--pattern", help="A glob over file names.")] = "*",
    recursive: Annotated[bool, typer.Option("--recursive", help="Also take files in sub-folders.")] = False,
    name_template: Annotated[
        str, typer.Option("--name-template", help="Destination file name, e.g. {stem}-{date:%Y%m%d}{ext}.")
    ] = "{name}",
    trigger: Annotated[
        str | None, typer.Option("--trigger", help="manual, schedule or event (schedule when --cron is given).")
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", help='A 5-field cron, e.g. "*/5 * * * *".')] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone the cron runs in.")] = "UTC",
    options: Options = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    as_json: Json = False,
) -> None:
    """Create a route from one endpoint folder to another."""
    src_ref, src_path = _location(source, "--from")
    dst_ref, dst_path = _location(destination, "--to")
    kind = trigger or ("schedule" if cron else "manual")
    body_trigger: dict[str, Any] = {"type": kind, "timezone": timezone}
    if cron:
        body_trigger["cron"] = cron
    with session(as_json) as api:
        body = {
            "name": name,
            "source": {
                "endpoint": api.endpoint(src_ref)["id"],
                "path": src_path,
                "pattern": pattern,
                "recursive": recursive,
            },
            "destination": {"endpoint": api.endpoint(dst_ref)["id"], "path": dst_path, "name": name_template},
            "trigger": body_trigger,
            "options": parse_options(options),
            "enabled": not disabled,
        }
        route = api.post("routes", body)
        if as_json:
            output.emit_json(route)
        else:
            typer.echo(f"Route {route['name']} ({route['id']}), trigger {route['trigger']['type']}")


@routes_app.command("list")
def routes_list(as_json: Json = False) -> None:
    """List the routes, newest first."""
    with session(as_json) as api:
        rows = list(api.pages("routes"))
        if as_json:
            output.emit_json(rows)
            return
        names = {e["id"]: e["name"] for e in api.pages("endpoints")}
        output.table(
            ["ID", "NAME", "FROM", "TO", "TRIGGER", "ENABLED"],
            (
                [
                    r["id"],
                    r["name"],
                    f"{names.get(r['source']['endpoint'], r['source']['endpoint'])}:{r['source']['path']}"
                    f"/{r['source']['pattern']}".replace("//", "/"),
                    f"{names.get(r['destination']['endpoint'], r['destination']['endpoint'])}:"
                    f"{r['destination']['path']}",
                    r["trigger"]["type"] + (f" {r['trigger']['cron']}" if r["trigger"].get("cron") else ""),
                    "yes" if r["enabled"] else "no",
                ]
                for r in rows
            ),
        )


@routes_app.command("run")
def routes_run(
    route: Annotated[str, typer.Argument(help="Route name or id.")],
    force: Annotated[bool, typer.Option("--force", help="Skip the stability rules (take every file now).")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the new transfers until they end.")] = False,
    interval: Interval = 1.0,
    as_json: Json = False,
) -> None:
    """Run a route now: list its source and create transfers for the files it takes."""
    with session(as_json) as api:
        found = api.route(route)
        result = api.post(f"routes/{found['id']}/run", {"force": force})
        # The answer is the first page of what the run created; `next` pages on through the rest.
        created = list(api.rows(result))
        result = {**result, "results": created, "next": None}
        if not as_json:
            if created:
                output.transfers_table(created)
            else:
                typer.echo("No new transfers.")
            for waiting in result.get("waiting", []):
                typer.echo(f"Waiting: {waiting['files']} file(s): {waiting['reason']}")
        finals = [_follow(api, t["id"], interval, quiet=as_json) for t in created] if wait else []
        if as_json:
            output.emit_json({**result, "results": finals} if wait else result)
    if any(t["state"] not in ("succeeded", "skipped") for t in finals):
        raise typer.Exit(1)


# --- transfers ----------------------------------------------------------------------------


@transfers_app.command("list")
def transfers_list(
    route: Annotated[str | None, typer.Option("--route", help="Only this route's (name or id).")] = None,
    state: Annotated[str | None, typer.Option("--state", help="States, comma-separated (e.g. failed,dead).")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time with offset, e.g. 2026-12-01T00:00:00Z.")
    ] = None,
    path_prefix: Annotated[str | None, typer.Option("--path-prefix", help="Source paths starting with this.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many, newest first.")] = 50,
    as_json: Json = False,
) -> None:
    """List transfers, newest first."""
    with session(as_json) as api:
        route_id = api.route(route)["id"] if route else None
        rows = list(
            api.pages("transfers", limit=limit, route=route_id, state=state, since=since, path_prefix=path_prefix)
        )
        if as_json:
            output.emit_json(rows)
        else:
            output.transfers_table(rows)


@transfers_app.command("show")
def transfers_show(
    transfer: Annotated[str, typer.Argument(help="Transfer id.")],
    as_json: Json = False,
) -> None:
    """One transfer: state, progress, error and its timeline."""
    with session(as_json) as api:
        found = api.transfer(transfer)
        if as_json:
            output.emit_json(found)
        else:
            output.transfer_view(found, _names(api, {found["source"]["endpoint"], found["destination"]["endpoint"]}))


def _names(api: Client, endpoint_ids: set[str]) -> dict[str, str]:
    """Endpoint id → name, one request per endpoint; a deleted one keeps its id."""
    names: dict[str, str] = {}
    for endpoint_id in endpoint_ids:
        try:
            names[endpoint_id] = api.get(f"endpoints/{endpoint_id}")["name"]
        except ApiError:
            continue
    return names


def riding_out_blips(
    fetch: Callable[[], dict[str, Any]], *, tries: int, interval: float, sleep: Callable[[float], None]
) -> Callable[[], dict[str, Any]]:
    """``fetch``, retried through up to ``tries`` network errors in a row: a long watch
    should not end on one dropped connection (an API error still ends it at once)."""

    def fetch_again() -> dict[str, Any]:
        for attempt in range(tries):
            try:
                return fetch()
            except NetworkError:
                if attempt == tries - 1:
                    raise
                sleep(interval)
        raise AssertionError("unreachable")  # pragma: no cover

    return fetch_again


def _follow(api: Client, transfer_id: str, interval: float, *, quiet: bool = False) -> dict[str, Any]:
    """Watch one transfer to its end with a progress bar; print how it ended."""
    fetch = riding_out_blips(lambda: api.transfer(transfer_id), tries=10, interval=interval, sleep=time.sleep)
    try:
        final = output.watch(fetch, interval=interval, sleep=time.sleep, show_events=not quiet)
    except KeyboardInterrupt:
        # Ctrl-C stops the watching, not the transfer: say so, and how to pick it up again.
        output.err().print(
            f"Stopped watching; transfer {transfer_id} goes on (ferry transfers watch {transfer_id}).", markup=False
        )
        raise typer.Exit(130) from None
    if not quiet:
        err = output.err()
        if final["state"] in ("succeeded", "skipped"):
            size = output.human_bytes(final["progress"]["bytes_total"] or final["source"]["size"])
            err.print(
                f"{final['id']} {final['state']}: {size}" + (f", sha256 {final['sha256']}" if final["sha256"] else "")
            )
        else:
            problem = final.get("error") or {}
            err.print(
                Text.assemble(
                    (f"{final['id']} {final['state']}", "red"),
                    f": {problem.get('code')}: {problem.get('message')}" if problem else "",
                )
            )
    return final


@transfers_app.command("watch")
def transfers_watch(
    transfer: Annotated[str, typer.Argument(help="Transfer id.")],
    interval: Interval = 1.0,
    as_json: Json = False,
) -> None:
    """Follow a transfer to its end with a live progress bar (bytes, rate, ETA) and its timeline; exit 1 unless it succeeded or was skipped."""  # noqa: E501 - the help text keeps line breaks
    with session(as_json) as api:
        final = _follow(api, api.transfer(transfer)["id"], interval, quiet=as_json)
        if as_json:
            output.emit_json(final)
    if final["state"] not in ("succeeded", "skipped"):
        raise typer.Exit(1)


def _action(transfer: str, verb: str, as_json: bool) -> None:
    with session(as_json) as api:
        found = api.transfer(transfer)
        result = api.post(f"transfers/{found['id']}/{verb}")
        if as_json:
            output.emit_json(result)
        else:
            typer.echo(f"{result['id']}: {result['state']}")


@transfers_app.command("redrive")
def transfers_redrive(
    transfer: Annotated[str, typer.Argument(help="Transfer id (failed or dead).")],
    as_json: Json = False,
) -> None:
    """Send a failed or dead transfer again, with a fresh attempt budget."""
    _action(transfer, "redrive", as_json)


@transfers_app.command("cancel")
def transfers_cancel(
    transfer: Annotated[str, typer.Argument(help="Transfer id.")],
    as_json: Json = False,
) -> None:
    """Cancel a transfer that has not succeeded (a dead one too, so it is never re-driven)."""
    _action(transfer, "cancel", as_json)


# --- send -----------------------------------------------------------------------------------


@app.command()
def send(
    source: Annotated[str, typer.Option("--from", help="ENDPOINT:PATH of the file (on an SFTP server or in S3).")],
    destination: Annotated[
        str, typer.Option("--to", help="ENDPOINT:PATH to deliver to; a PATH ending in / is a folder.")
    ],
    options: Options = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Reuse to retry safely: the same key and body give the same transfer (24 h). Default: a new one.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it to its end with a progress bar.")] = False,
    interval: Interval = 1.0,
    as_json: Json = False,
) -> None:
    """Send one file from an endpoint to another, now (an ad-hoc transfer, no route).

    Ferry moves files between registered endpoints; it has no upload API, so the file must already be on an SFTP server or in a bucket Ferry knows.
    """  # noqa: E501 - one line: the help text keeps the docstring's line breaks
    src_ref, src_path = _location(source, "--from")
    dst_ref, dst_path = _location(destination, "--to")
    key = idempotency_key or f"ferry-cli-{uuid.uuid4()}"
    with session(as_json) as api:
        body: dict[str, Any] = {
            "source": {"endpoint": api.endpoint(src_ref)["id"], "path": src_path},
            "destination": {"endpoint": api.endpoint(dst_ref)["id"], "path": dst_path},
        }
        parsed = parse_options(options)
        if parsed:
            body["options"] = parsed
        try:
            created = api.post("transfers", body, headers={"Idempotency-Key": key})
        except NetworkError:
            # The request may have arrived: the same key makes the retry the same transfer.
            time.sleep(1)
            created = api.post("transfers", body, headers={"Idempotency-Key": key})
        if not as_json:
            output.err().print(f"Transfer {created['id']} ({created['state']}), idempotency key {key}")
        final = _follow(api, created["id"], interval, quiet=as_json) if wait else created
        if as_json:
            output.emit_json(final)
        elif not wait:
            typer.echo(created["id"])
    if wait and final["state"] not in ("succeeded", "skipped"):
        raise typer.Exit(1)


def main() -> None:
    """The console script's entry point."""
    app()
