#!/usr/bin/env bash
# The servers a user runs next to the gateway, from Debian's packages, for the tests that drive them:
# headless Chromium opens the HTML report and the admin console; Prometheus scrapes a gateway to prove
# every dashboard panel has data; HAProxy fronts two gateway instances. `make test` runs this first.
# Installs what is missing when it can (root with apt-get); otherwise says which tests will be skipped.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
((${#need[@]})) || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}") && exit 0
fi
echo "note: ${need[*]} not installed (apt-get install ${need[*]}); the tests that need them are skipped" >&2
exit 0
