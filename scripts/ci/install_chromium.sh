#!/usr/bin/env bash
# Headless Chromium for the documentation's browser test (tests/test_docs_site.py), from Debian's packages: nothing
# is downloaded at test time. Does nothing where a Chromium is already installed; where apt-get cannot be used (not
# Debian, not root), says so and exits 0: the browser test is then skipped, with the reason.
set -uo pipefail
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "install_chromium: $(command -v "$name") is installed"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: no apt-get here: the browser test will be skipped (install Chromium to run it)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_chromium: not root, cannot apt-get install chromium: the browser test will be skipped"
    exit 0
fi
echo "install_chromium: apt-get install chromium (Debian's package)"
if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    echo "install_chromium: $(command -v chromium) installed"
else
    echo "install_chromium: apt-get install chromium failed: the browser test will be skipped"
fi
exit 0
