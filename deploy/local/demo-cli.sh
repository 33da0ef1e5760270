#!/usr/bin/env bash
# The `ferry` CLI on the local stack: run `make run` in one terminal, then this in another.
# Registers the demo SFTP server (after scanning its host key) and the demo bucket with
# `ferry endpoints add`, writes a 200 MiB file into the demo SFTP root, sends it to S3 with
# `ferry send --wait` (a live progress bar: bytes, rate, ETA; the same as
# `ferry transfers watch ID`), then shows its timeline. FERRY_DEMO_SIZE_MIB changes the size.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .local/stack.env
export PATH="$PWD/.venv/bin:$PATH"   # `ferry` is installed there by make install
size_mib=${FERRY_DEMO_SIZE_MIB:-200}
suffix=$(date +%s)

ferry whoami
echo "== the demo SFTP server's host keys"
ferry endpoints scan "$FERRY_DEMO_SFTP_HOST" --port "$FERRY_DEMO_SFTP_PORT"

echo "== endpoints (secrets come from the environment, never from arguments)"
FERRY_SFTP_PASSWORD="$FERRY_DEMO_SFTP_PASSWORD" ferry endpoints add sftp "cli-sftp-$suffix" \
  --host "$FERRY_DEMO_SFTP_HOST" --port "$FERRY_DEMO_SFTP_PORT" --username "$FERRY_DEMO_SFTP_USER" \
  --root "$FERRY_DEMO_SFTP_ROOT" --host-key "$FERRY_DEMO_SFTP_HOST_KEY" --password
FERRY_S3_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" ferry endpoints add s3 "cli-s3-$suffix" \
  --bucket "$FERRY_DEMO_BUCKET" --region us-east-1 --access-key-id "$AWS_ACCESS_KEY_ID"
ferry endpoints test "cli-sftp-$suffix"

echo "== a ${size_mib} MiB file in the SFTP root"
folder="outbound/cli-$suffix"
mkdir -p "$FERRY_DEMO_SFTP_ROOT/$folder"
chmod 777 "$FERRY_DEMO_SFTP_ROOT/outbound" "$FERRY_DEMO_SFTP_ROOT/$folder" 2>/dev/null || true
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$FERRY_DEMO_SFTP_ROOT/$folder/big.bin"
sha256sum "$FERRY_DEMO_SFTP_ROOT/$folder/big.bin"

echo "== send it to S3, following it with a progress bar"
ferry send --from "cli-sftp-$suffix:/$folder/big.bin" --to "cli-s3-$suffix:/inbound/" --wait
transfer_id=$(ferry transfers list --path-prefix "/$folder/" -n 1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
ferry transfers show "$transfer_id"
