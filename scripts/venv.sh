# Sourced by scripts/up and scripts/test: create (once) and activate the project's virtual environment.
# AIYIELD_VENV picks another location; EXTRAS selects optional dependencies (e.g. "test").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${AIYIELD_VENV:-$root/.venv}
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "aiyield needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
}
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment in $venv" >&2
  "$python" -m venv "$venv"
fi
spec="$root"
[ -n "${EXTRAS:-}" ] && spec="$root[$EXTRAS]"
# Reinstall only when the project's dependencies changed (stamp = hash of pyproject.toml + extras).
stamp="$venv/.aiyield-installed"
want=$( (cat "$root/pyproject.toml"; echo "${EXTRAS:-}") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing aiyield${EXTRAS:+[$EXTRAS]} into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$spec"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
