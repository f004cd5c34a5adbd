#!/usr/bin/env bash
# Fuzz a running rowguard from its own OpenAPI document with schemathesis (from PyPI, in a venv
# of its own). Fails when any request gets a 5xx (or another selected check fails).
#
#   scripts/schemathesis.sh [BASE_URL]            # default http://127.0.0.1:8080
#
# Environment:
#   ROWGUARD_TENANT     tenant slug sent as X-Tenant (default acme, the demo seed)
#   ROWGUARD_EMAIL / ROWGUARD_PASSWORD
#                       logs in first and sends the token on every tenant request
#                       (default owner@acme.test / rowguard-demo; set ROWGUARD_EMAIL= to skip)
#   ROWGUARD_OPERATOR_EMAIL / ROWGUARD_OPERATOR_PASSWORD
#                       an operator (`rowguard operators create`): logs in and sends its
#                       platform token on /platform/v1 requests (unset: those run unauthenticated)
#   SCHEMATHESIS_CHECKS checks to run (default not_a_server_error; `all` is stricter)
#   SCHEMATHESIS_MAX_TIME  seconds for the whole run (default 120)
#   SCHEMATHESIS_VENV   where the venv lives (default .rowguard/schemathesis-venv)
#
# Rate limits apply to the fuzzer like to anyone: start the instance with
# ROWGUARD_RATE_LIMITS=false, or expect 429s (schemathesis then waits for Retry-After).
#
# The session is kept for the whole run: the operations that end it (logout-all, a password
# change, logout and refresh, which take the refresh token in the body) are left out, so every
# other operation is exercised authenticated, not just as 401s.
set -euo pipefail

base_url="${1:-http://127.0.0.1:8080}"
base_url="${base_url%/}"
tenant="${ROWGUARD_TENANT:-acme}"
email="${ROWGUARD_EMAIL-owner@${tenant}.test}"
password="${ROWGUARD_PASSWORD:-rowguard-demo}"
checks="${SCHEMATHESIS_CHECKS:-not_a_server_error}"
max_time="${SCHEMATHESIS_MAX_TIME:-120}"
venv="${SCHEMATHESIS_VENV:-.rowguard/schemathesis-venv}"

if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "installing schemathesis into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    # Major version pinned: the CLI's options changed between 3 and 4.
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

curl -fsS "$base_url/healthz" >/dev/null || { echo "no rowguard answering at $base_url" >&2; exit 2; }

config=$(mktemp)
trap 'rm -f "$config"' EXIT
tenant_auth=""
if [ -n "$email" ]; then
    body=$(printf '{"email":"%s","password":"%s"}' "$email" "$password")
    login=$(curl -sS "$base_url/v1/auth/login" -H "X-Tenant: $tenant" -H 'Content-Type: application/json' -d "$body")
    token=$(printf '%s' "$login" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    if [ -z "$token" ]; then
        echo "login as $email on $tenant failed: $login" >&2
        exit 2
    fi
    tenant_auth=", Authorization = \"Bearer $token\""
fi
printf 'headers = { X-Tenant = "%s"%s }\n' "$tenant" "$tenant_auth" >>"$config"
if [ -n "${ROWGUARD_OPERATOR_EMAIL:-}" ]; then
    body=$(printf '{"email":"%s","password":"%s"}' "$ROWGUARD_OPERATOR_EMAIL" "${ROWGUARD_OPERATOR_PASSWORD:-}")
    login=$(curl -sS "$base_url/platform/v1/auth/login" -H 'Content-Type: application/json' -d "$body")
    operator_token=$(printf '%s' "$login" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    if [ -z "$operator_token" ]; then
        echo "operator login as $ROWGUARD_OPERATOR_EMAIL failed: $login" >&2
        exit 2
    fi
    cat >>"$config" <<TOML
[[operations]]
include-path-regex = "^/platform/v1/"
headers = { X-Tenant = "$tenant", Authorization = "Bearer $operator_token" }
TOML
fi
# A reference to a row that does not exist is schema-valid, and answered 422
# invalid_reference by design (the same answer as another tenant's row): not a rejection
# of valid data.
for operation in "POST /v1/contacts" "PATCH /v1/contacts/{id}" "POST /v1/deals" "PATCH /v1/deals/{id}"; do
    cat >>"$config" <<TOML
[[operations]]
include-name = "$operation"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
TOML
done

# Adopted tables (/v1/data): their CHECK, unique and foreign-key constraints are not in the
# schema (the catalog has them as SQL), so a schema-valid row can be refused by one, by design
# with 409/422 naming it; and a table name the catalog does not serve is 404.
cat >>"$config" <<TOML
[[operations]]
include-path-regex = "^/v1/data/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
TOML

# Operators see a deleted tenant's tombstone (status `deleted`, 200) by design: the platform
# API keeps the registry entry until a purge, so "deleted, still readable" is not a leak.
cat >>"$config" <<TOML
[[operations]]
include-name = "GET /platform/v1/tenants/{slug}"
checks.use_after_free.enabled = false
TOML

"$venv/bin/schemathesis" --config-file "$config" run "$base_url/openapi.json" \
    --url "$base_url" \
    --checks "$checks" \
    --max-time "$max_time" \
    --rate-limit auto \
    --exclude-path /v1/auth/logout-all \
    --exclude-path /v1/me/password \
    --exclude-path /v1/auth/logout \
    --exclude-path /v1/auth/refresh \
    --suppress-health-check all
