#!/usr/bin/env bash
# Install the system services Ferry's tests and local stack use, when absent.
# As root this may apt-get install openssh-server, postgresql, socat, gnupg (OpenPGP route
# options stream through gpg) and chromium (with its driver, for the headless-browser checks
# of the docs and admin pages); otherwise it explains.
# --optional: never fail (make run falls back to asyncssh's SFTP server without sshd).
set -euo pipefail
optional=${1:-}
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server openssh-client)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
# OpenPGP route options (engine/pgp.py) run gpg over pipes; gpgconf stops its agent.
{ command -v gpg >/dev/null && command -v gpgconf >/dev/null && command -v gpg-agent >/dev/null; } || missing+=(gnupg)
# The broker-outage test forwards SQS through socat, which it stops and starts.
if [ "$optional" != "--optional" ]; then command -v socat >/dev/null || missing+=(socat); fi
if [ "$optional" != "--optional" ]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
fi
if [ "$optional" != "--optional" ] && [ -z "${DATABASE_URL:-}" ]; then
  command -v pg_ctlcluster >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
msg="missing system packages: ${missing[*]} (install them, or run as root so make can)"
if [ "$optional" = "--optional" ]; then echo "note: $msg"; exit 0; fi
echo "$msg" >&2
exit 1
