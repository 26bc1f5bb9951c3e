# Shared by scripts/run and scripts/test (sourced, not executed): find Python >= 3.12, make .venv,
# install the pinned requirements when they changed. Django 6.0 needs Python 3.12 or newer.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  local candidates=(python3.12 python3.13 python3.14 python3)
  local c
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  # pyenv installs versions that are not on PATH unless selected.
  local root
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for c in "$root"/versions/3.12*/bin/python3 "$root"/versions/3.13*/bin/python3 /usr/bin/python3.1[2-9] /usr/local/bin/python3.1[2-9]; do
    if [ -x "$c" ] && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

setup_venv() {  # $1: requirements file to install
  local req="$1"
  if [ ! -x .venv/bin/python ]; then
    local py
    if ! py="$(find_python)"; then
      echo "Yeeter needs Python 3.12 or newer (Django 6.0); none was found on PATH or under pyenv." >&2
      exit 2
    fi
    echo "==> creating .venv with $py"
    "$py" -m venv .venv
  fi
  local stamp=".venv/.installed-$(basename "$req")"
  local want
  want="$(cat requirements*.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing $req"
    # (this machine's pip configuration names a missing extra index folder; its warnings are noise)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req" 2> >(grep -v "^WARNING: Location" >&2)
    echo "$want" > "$stamp"
  fi
}
