#!/usr/bin/env bash
# A first transfer on the local stack: run `make run` in one terminal, then this in another.
# Registers the demo SFTP server and the demo bucket, routes *.csv from SFTP /outbound to
# S3 inbound/, drops a file, runs the route and shows the transfer.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .local/stack.env
api() { curl -sS -H "Authorization: Bearer $FERRY_API_KEY" -H 'Content-Type: application/json' "$@"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

suffix=$(date +%s)
sftp_id=$(api "$FERRY_API_URL/api/v1/endpoints" -d @- <<JSON | field "['id']"
{"name": "demo-sftp-$suffix", "kind": "sftp",
 "config": {"host": "$FERRY_DEMO_SFTP_HOST", "port": $FERRY_DEMO_SFTP_PORT, "username": "$FERRY_DEMO_SFTP_USER",
            "root": "$FERRY_DEMO_SFTP_ROOT", "host_keys": ["$FERRY_DEMO_SFTP_HOST_KEY"]},
 "credentials": {"password": "$FERRY_DEMO_SFTP_PASSWORD"}}
JSON
)
s3_id=$(api "$FERRY_API_URL/api/v1/endpoints" -d @- <<JSON | field "['id']"
{"name": "demo-s3-$suffix", "kind": "s3", "config": {"bucket": "$FERRY_DEMO_BUCKET", "region": "us-east-1"},
 "credentials": {"access_key_id": "$AWS_ACCESS_KEY_ID", "secret_access_key": "$AWS_SECRET_ACCESS_KEY"}}
JSON
)
echo "endpoints: sftp $sftp_id, s3 $s3_id"
api -X POST "$FERRY_API_URL/api/v1/endpoints/$sftp_id/test" | field "['ok']" | sed 's/^/sftp connection test ok: /'

route_id=$(api "$FERRY_API_URL/api/v1/routes" -d @- <<JSON | field "['id']"
{"name": "demo-$suffix", "source": {"endpoint": "$sftp_id", "path": "/outbound", "pattern": "*.csv"},
 "destination": {"endpoint": "$s3_id", "path": "/inbound"}, "trigger": {"type": "manual"}}
JSON
)
echo "route: $route_id"

mkdir -p "$FERRY_DEMO_SFTP_ROOT/outbound"
chmod 777 "$FERRY_DEMO_SFTP_ROOT/outbound" 2>/dev/null || true
echo "id,amount,$suffix" > "$FERRY_DEMO_SFTP_ROOT/outbound/report-$suffix.csv"

transfer_id=$(api -X POST "$FERRY_API_URL/api/v1/routes/$route_id/run" -d '{"force": true}' | field "['results'][0]['id']")
echo "transfer: $transfer_id"
for _ in $(seq 1 30); do
  state=$(api "$FERRY_API_URL/api/v1/transfers/$transfer_id" | field "['state']")
  [ "$state" = succeeded ] || [ "$state" = dead ] && break
  sleep 1
done
api "$FERRY_API_URL/api/v1/transfers/$transfer_id" | python3 -m json.tool
