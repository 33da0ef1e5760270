#!/usr/bin/env bash
# Notifications on the local stack: run `make run` in one terminal, then this in another.
# Starts a local HTTPS webhook receiver (its certificate is from the CA `make run` made and
# trusts), subscribes it to transfer.succeeded and batch.completed, moves one file and prints
# the signed events that arrived, each with whether its Standard Webhooks signature verifies.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .local/stack.env
api() { curl -sS -H "Authorization: Bearer $FERRY_API_KEY" -H 'Content-Type: application/json' "$@"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
PY=.venv/bin/python

port=${FERRY_DEMO_WEBHOOK_PORT:-8890}
suffix=$(date +%s)
work=.local/webhooks/demo-$suffix
mkdir -p "$work"
: > "$work/secret"
$PY -m deploy.local.webhook_receiver --port "$port" --cert "$FERRY_DEMO_WEBHOOK_CERT" \
  --key "$FERRY_DEMO_WEBHOOK_KEY" --secret-file "$work/secret" > "$work/received.jsonl" 2> "$work/receiver.log" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
sleep 1

subscription=$(api "$FERRY_API_URL/api/v1/subscriptions" -d @- <<JSON
{"target": "webhook", "url": "https://127.0.0.1:$port/hooks/ferry",
 "event_types": ["transfer.succeeded", "batch.completed"], "description": "demo-notify $suffix"}
JSON
)
echo "$subscription" | field "['secret']" > "$work/secret"  # shown once: kept for the receiver only
subscription_id=$(echo "$subscription" | field "['id']")
# The subscription goes with the receiver: a later run's receiver on the same port would get
# this one's deliveries too, signed with a secret it does not know.
trap 'kill $receiver 2>/dev/null || true; api -X DELETE "$FERRY_API_URL/api/v1/subscriptions/$subscription_id" >/dev/null || true' EXIT
echo "subscription: $subscription_id -> https://127.0.0.1:$port/hooks/ferry"

sftp_id=$(api "$FERRY_API_URL/api/v1/endpoints" -d @- <<JSON | field "['id']"
{"name": "notify-sftp-$suffix", "kind": "sftp",
 "config": {"host": "$FERRY_DEMO_SFTP_HOST", "port": $FERRY_DEMO_SFTP_PORT, "username": "$FERRY_DEMO_SFTP_USER",
            "root": "$FERRY_DEMO_SFTP_ROOT", "host_keys": ["$FERRY_DEMO_SFTP_HOST_KEY"]},
 "credentials": {"password": "$FERRY_DEMO_SFTP_PASSWORD"}}
JSON
)
s3_id=$(api "$FERRY_API_URL/api/v1/endpoints" -d @- <<JSON | field "['id']"
{"name": "notify-s3-$suffix", "kind": "s3", "config": {"bucket": "$FERRY_DEMO_BUCKET", "region": "us-east-1"},
 "credentials": {"access_key_id": "$AWS_ACCESS_KEY_ID", "secret_access_key": "$AWS_SECRET_ACCESS_KEY"}}
JSON
)
folder="/outbound/notify-$suffix"
route_id=$(api "$FERRY_API_URL/api/v1/routes" -d @- <<JSON | field "['id']"
{"name": "notify-$suffix", "source": {"endpoint": "$sftp_id", "path": "$folder", "pattern": "*.csv"},
 "destination": {"endpoint": "$s3_id", "path": "/inbound"}, "trigger": {"type": "manual"}}
JSON
)
mkdir -p "$FERRY_DEMO_SFTP_ROOT$folder"
chmod 777 "$FERRY_DEMO_SFTP_ROOT/outbound" "$FERRY_DEMO_SFTP_ROOT$folder" 2>/dev/null || true
echo "id,amount,$suffix" > "$FERRY_DEMO_SFTP_ROOT$folder/notify-$suffix.csv"
transfer_id=$(api -X POST "$FERRY_API_URL/api/v1/routes/$route_id/run" -d '{"force": true}' | field "['results'][0]['id']")
echo "route: $route_id, transfer: $transfer_id"

# transfer.succeeded comes within seconds, batch.completed right after it (the run's batch
# holds this one file; docs/batches.md).
for _ in $(seq 1 60); do
  grep -q '"batch.completed"' "$work/received.jsonl" && grep -q '"transfer.succeeded"' "$work/received.jsonl" && break
  sleep 1
done
echo
echo "received ($(wc -l < "$work/received.jsonl") webhook(s)):"
$PY -c "
import json, sys
for line in open(sys.argv[1]):
    got = json.loads(line)
    print(json.dumps(got, indent=2))
types = {json.loads(line)['event']['type'] for line in open(sys.argv[1])}
missing = {'transfer.succeeded', 'batch.completed'} - types
if missing:
    sys.exit('missing after 60 s: ' + ', '.join(sorted(missing)))
" "$work/received.jsonl"
echo
echo "delivery log (the subscription is deleted when this script ends):"
api "$FERRY_API_URL/api/v1/subscriptions/$subscription_id/deliveries" | $PY -m json.tool | head -30
