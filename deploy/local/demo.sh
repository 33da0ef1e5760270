#!/usr/bin/env bash
# A first transfer on the local stack: run `make run` in one terminal, then this in another.
# Registers the demo SFTP server and the demo bucket, routes *.csv from two SFTP folders
# under /outbound to S3 inbound/ (one route in each region's partitions), drops a file in
# each, runs both routes and shows the transfers and the region that ran each.
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

# Routes are spread over partitions, and each partition has a home region (partition mod
# the number of regions). Make routes until one lives in each region's partitions, so the
# demo delivers from both: the us-west-2 one is created by the API (us-east-1), handed off
# to us-west-2's keeper and run by its worker on a forwarded-style database connection.
declare -A routes=()
for attempt in $(seq 1 20); do
  folder="/outbound/$suffix-$attempt"
  route_json=$(api "$FERRY_API_URL/api/v1/routes" -d @- <<JSON
{"name": "demo-$suffix-$attempt", "source": {"endpoint": "$sftp_id", "path": "$folder", "pattern": "*.csv"},
 "destination": {"endpoint": "$s3_id", "path": "/inbound"}, "trigger": {"type": "manual"}}
JSON
)
  home=$(( $(echo "$route_json" | field "['partition']") % 2 ))
  route_id=$(echo "$route_json" | field "['id']")
  if [ -z "${routes[$home]:-}" ]; then
    routes[$home]="$route_id $folder"
  else
    api -X DELETE "$FERRY_API_URL/api/v1/routes/$route_id" >/dev/null
  fi
  [ "${#routes[@]}" -eq 2 ] && break
done

transfers=()
for home in "${!routes[@]}"; do
  read -r route_id folder <<<"${routes[$home]}"
  echo "route: $route_id (source $folder)"
  mkdir -p "$FERRY_DEMO_SFTP_ROOT$folder"
  chmod 777 "$FERRY_DEMO_SFTP_ROOT/outbound" "$FERRY_DEMO_SFTP_ROOT$folder" 2>/dev/null || true
  echo "id,amount,$suffix" > "$FERRY_DEMO_SFTP_ROOT$folder/report-$suffix-$home.csv"
  transfer_id=$(api -X POST "$FERRY_API_URL/api/v1/routes/$route_id/run" -d '{"force": true}' | field "['results'][0]['id']")
  echo "transfer: $transfer_id"
  transfers+=("$transfer_id")
done
for transfer_id in "${transfers[@]}"; do
  for _ in $(seq 1 30); do
    state=$(api "$FERRY_API_URL/api/v1/transfers/$transfer_id" | field "['state']")
    [ "$state" = succeeded ] || [ "$state" = dead ] && break
    sleep 1
  done
  api "$FERRY_API_URL/api/v1/transfers/$transfer_id" | python3 -m json.tool
done
echo "summary:"
for transfer_id in "${transfers[@]}"; do
  api "$FERRY_API_URL/api/v1/transfers/$transfer_id" |
    python3 -c "
import json, sys
t = json.load(sys.stdin)
print(f\"  {t['id']}: {t['state']}, run in {t['region']}\")
if t.get('execution_arn'):  # FERRY_ORCHESTRATOR=stepfunctions, make run's default
    print(f\"    execution {t['execution_arn']}\")
    steps = [e['detail'].split(' (execution ')[0] for e in t['timeline'] if e['to_state'] == 'step']
    print('    steps: ' + '; '.join(s.removeprefix('step ') for s in steps))
"
done
