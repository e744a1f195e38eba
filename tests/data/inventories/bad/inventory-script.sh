#!/bin/sh
# A dynamic inventory script: devbox must refuse it without running it (the tests point the canary
# at a temp file and check it was never created).
[ -n "$DEVBOX_SCRIPT_CANARY" ] && touch "$DEVBOX_SCRIPT_CANARY"
echo "{\"web\": [\"web1\"]}"
