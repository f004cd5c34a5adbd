#!/bin/bash
# Check a tenant's audit log with Go's transparency-log packages (golang.org/x/mod/sumdb/note
# and tlog), which share no code with rowguard: the signed heads against the published key,
# inclusion proofs of a dozen random events, and the consistency of an older head you saved.
#
#   apt-get install golang-go golang-golang-x-mod-dev jq curl
#   ROWGUARD_URL=http://127.0.0.1:8080 TENANT=acme TOKEN=<an auditor's access token> \
#     OLD_HEAD=old-head.json scripts/audit-tlog-check/check.sh
#
# OLD_HEAD is a `GET /v1/audit-log/head` answer saved earlier (without it, the current head is
# saved there and compared with itself; run again later). The key is read from
# /.well-known/audit-keys.json unless VKEY names the one you pinned.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=${ROWGUARD_URL:-http://127.0.0.1:8080}
auth=(-H "Authorization: Bearer $TOKEN" -H "X-Tenant: $TENANT")
bin=$(mktemp -d)/audit-tlog-check
GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$bin" "$here/main.go"
vkey=${VKEY:-$(curl -sf "$url/.well-known/audit-keys.json" | jq -r .verifier_key)}
new=$(curl -sf "$url/v1/audit-log/head" "${auth[@]}")
old_file=${OLD_HEAD:-old-head.json}
[ -s "$old_file" ] || echo "$new" > "$old_file"
old=$(cat "$old_file")
size=$(jq .tree_size <<<"$new")
ids=$(curl -sf "$url/v1/audit-events?limit=100" "${auth[@]}" | jq -r '.items[].id' | shuf -n 12)
# An event sealed after the head was signed answers 409 not_sealed: left out, the rest must prove.
incl=$(for id in $ids; do curl -s "$url/v1/audit-events/$id/proof?tree_size=$size" "${auth[@]}"; done | jq -s '[.[] | select(.leaf_index != null)]')
# Whose log it must be: the tenant id in the token (its `tid` claim), unless TENANT_ID says.
tenant=${TENANT_ID:-$(jq -rR 'split(".")[1] | gsub("-";"+") | gsub("_";"/") | @base64d | fromjson | .tid' <<<"$TOKEN")}
cons=$(curl -sf "$url/v1/audit-log/consistency?from=$(jq .tree_size <<<"$old")&to=$size" "${auth[@]}" | jq .proof)
jq -n --arg vkey "$vkey" --arg tenant "$tenant" --argjson old "$old" --argjson new "$new" --argjson incl "$incl" --argjson cons "$cons" \
  '{vkey: $vkey, tenant_id: $tenant, old_note: $old.note, new_note: $new.note, inclusion: $incl, consistency: $cons}' | "$bin"
