#!/usr/bin/env bash
# Builds the dashboard into dashboard/dist/ (index.html, style.css, dashboard.js, dashboard_bg.wasm), installing
# what it needs idempotently: the wasm32 target, the wasm-bindgen CLI matching Cargo.lock, and (optionally)
# wasm-opt from npm's binaryen (never Debian's: its old wasm-opt breaks the module at runtime).
#
# Honours CARGO_TARGET_DIR. Set DASHBOARD_WASM_OPT=0 to skip wasm-opt. Fails if the gzipped .wasm exceeds the
# budget (240 KiB).
set -euo pipefail
DASHBOARD=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DASHBOARD/.." && pwd)
DIST="$DASHBOARD/dist"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# 190 KiB before the channel view (issue 11), 214 KiB with it: the view's components, its socket and history
# calls and the message object's parsing cost ~24 KiB, after trimming (no serde tagged enum, no leptos Action).
BUDGET_BYTES=$((240 * 1024))
# binaryen's npm release whose wasm-opt is known to produce working modules here.
BINARYEN_VERSION=132.0.0
TOOLS="$ROOT/.run/dashboard-tools"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

cd "$ROOT"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The CLI must match the wasm-bindgen crate exactly, or the generated glue does not fit the module.
WANT=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[[ -n $WANT ]] || die "wasm-bindgen not found in Cargo.lock"
HAVE=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [[ $HAVE != "$WANT" ]]; then
  say "installing wasm-bindgen-cli $WANT (found: ${HAVE:-none}); takes a few minutes"
  # Without --locked: with it, a pinned dependency of the CLI is missing from the index.
  cargo install wasm-bindgen-cli --version "$WANT" --quiet
fi

say "building the dashboard (wasm32, profile wasm-release)"
cargo build -p dashboard --target wasm32-unknown-unknown --profile wasm-release --quiet
WASM="$TARGET_DIR/wasm32-unknown-unknown/wasm-release/dashboard.wasm"
[[ -f $WASM ]] || die "no $WASM after the build"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
wasm-bindgen --target web --no-typescript --out-dir "$STAGE" "$WASM"

if [[ ${DASHBOARD_WASM_OPT:-1} != 0 ]]; then
  WASM_OPT="$TOOLS/node_modules/.bin/wasm-opt"
  if [[ ! -x $WASM_OPT ]] && command -v npm >/dev/null; then
    say "installing wasm-opt (npm binaryen@$BINARYEN_VERSION) into $TOOLS"
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error "binaryen@$BINARYEN_VERSION" >&2 ||
      say "could not install binaryen; the module is left unoptimised"
  fi
  if [[ -x $WASM_OPT ]]; then
    "$WASM_OPT" -Oz --converge --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$STAGE/dashboard_bg.wasm" -o "$STAGE/dashboard_bg.opt.wasm"
    mv "$STAGE/dashboard_bg.opt.wasm" "$STAGE/dashboard_bg.wasm"
  else
    say "wasm-opt not available; the module is left unoptimised"
  fi
fi

# Replace dist/ in one step, so a notifier serving it never sees half a bundle.
cp "$DASHBOARD/index.html" "$DASHBOARD/style.css" "$STAGE/"
rm -rf "$DIST.new"
cp -r "$STAGE" "$DIST.new"
rm -rf "$DIST"
mv "$DIST.new" "$DIST"

RAW=$(stat -c %s "$DIST/dashboard_bg.wasm")
GZ=$(gzip -9 -c "$DIST/dashboard_bg.wasm" | wc -c)
printf 'dashboard: %s/dashboard_bg.wasm is %d bytes (%d KiB), %d bytes gzipped (%d KiB; budget %d KiB)\n' \
  "$DIST" "$RAW" $((RAW / 1024)) "$GZ" $((GZ / 1024)) $((BUDGET_BYTES / 1024))
(( GZ <= BUDGET_BYTES )) || die "the gzipped .wasm exceeds the budget"
