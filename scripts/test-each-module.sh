#!/usr/bin/env bash
# Run every test module on its own (in random order within it), so that no test
# passes only thanks to what another module left behind. CI runs this after the
# whole suite; it takes a few minutes more than the suite itself.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for module in tests/test_*.py; do
  .venv/bin/pytest -q -p no:cacheprovider "$module" >"$log" 2>&1
  status=$?
  # 5: the module collected no test here (all skipped at import); not a failure.
  if [ $status -ne 0 ] && [ $status -ne 5 ]; then
    failed+=("$module")
    tail -n 30 "$log"
  fi
  echo "$module: exit $status"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "modules that fail alone: ${failed[*]}"
  exit 1
fi
echo "every test module passes alone"
