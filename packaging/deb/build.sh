#!/usr/bin/env bash
# Builds chime-ha_VERSION-1_ARCH.deb from the project's wheel (see docs/packaging.md).
#
#   packaging/deb/build.sh [--out DIR] [--wheels DIR] [--python PY]
#
#   --out DIR     where the .deb goes (default: dist/)
#   --wheels DIR  take the wheel's runtime dependencies from DIR only (offline
#                 build; DIR holds the pinned wheels, e.g. from `pip download`)
#   --python PY   the Python that runs `python -m build` and pip (default: .venv/bin/python)
#
# What it does: `python -m build --wheel`, then a private virtual environment
# under /usr/lib/chime-ha holding that wheel and the exact runtime pins of
# requirements.lock (nothing else: no pip, no test tools), byte-compiled by
# Debian's /usr/bin/python3 so that it never writes outside dpkg's file list;
# /usr/bin/chime-ha, the systemd unit, /etc/default/chime-ha, the docs and the
# monitoring files; then `dpkg-deb --build` (root:root ownership).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/dist"
wheels=""
py="$root/.venv/bin/python"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        --python) py=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb dpkg /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "build.sh: needs $tool" >&2; exit 1; }
done
"$py" -c 'import build' 2>/dev/null || { echo "build.sh: $py has no 'build' module (pip install -r requirements.lock)" >&2; exit 1; }
# The venv's python is a symlink to Debian's python3: the vendored wheels (uvloop
# is compiled) must match its minor version, which the package then depends on.
target_minor=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
build_minor=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ "$target_minor" = "$build_minor" ] || { echo "build.sh: $py is Python $build_minor but /usr/bin/python3 is $target_minor" >&2; exit 1; }

version=$("$py" -c 'import re,sys; print(re.search(r"^version\s*=\s*\"([^\"]+)\"", open(sys.argv[1]).read(), re.M).group(1))' "$root/pyproject.toml")
arch=$(dpkg --print-architecture)
debver="$version-1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

echo "build.sh: wheel" >&2
"$py" -m build --wheel --outdir "$work/dist" "$root" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
rm -rf "$root/build"  # setuptools' scratch tree
wheel=$(ls "$work"/dist/chimeha-"$version"-*.whl)

# Runtime pins: the wheel's Requires-Dist names, at the versions requirements.lock pins.
pins=$("$py" - "$wheel" "$root/requirements.lock" <<'EOF'
import re, sys, zipfile
wheel, lock = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    reqs = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines() if l.startswith("Requires-Dist:")]
names = {norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs if "extra ==" not in r}
pinned = {}
for line in open(lock):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        n, v = line.split("==", 1)
        pinned[norm(n)] = f"{n.strip()}=={v.strip()}"
missing = names - pinned.keys()
if missing:
    sys.exit(f"build.sh: requirements.lock pins no version of {sorted(missing)}")
print(" ".join(pinned[n] for n in sorted(names)))
EOF
)
echo "build.sh: runtime dependencies: $pins" >&2

pkg="$work/pkg"
venv="$pkg/usr/lib/chime-ha"
echo "build.sh: private environment /usr/lib/chime-ha" >&2
/usr/bin/python3 -m venv --without-pip "$venv"
site="$venv/lib/python$target_minor/site-packages"
pip_src=()
[ -n "$wheels" ] && pip_src=(--no-index --find-links "$wheels")
# --no-deps with the exact pins: what goes in is exactly the wheel and its pinned dependencies.
"$py" -m pip install -q --disable-pip-version-check --no-compile --no-deps --only-binary=:all: \
    --target "$site" "${pip_src[@]}" "$wheel" $pins
rm -rf "$site/bin"                 # pip's console scripts point at the build machine's python
rm -f "$venv"/bin/activate* "$venv"/bin/Activate.ps1   # they name the staging path
sed -i "s|$venv|/usr/lib/chime-ha|g" "$venv/pyvenv.cfg"
cat >"$venv/bin/chime-ha" <<'EOF'
#!/usr/lib/chime-ha/bin/python3
# chime-ha, installed by the Debian package (docs/packaging.md).
import sys

sys.dont_write_bytecode = True  # everything is byte-compiled at build time; dpkg owns every file
from chimeha.cli import main

sys.exit(main())
EOF
chmod 0755 "$venv/bin/chime-ha"
mkdir -p "$pkg/usr/bin"
ln -s ../lib/chime-ha/bin/chime-ha "$pkg/usr/bin/chime-ha"
/usr/bin/python3 -m compileall -q -j0 --invalidation-mode checked-hash "$site" >/dev/null

install -D -m 0644 "$root/packaging/systemd/chime-ha.service" "$pkg/lib/systemd/system/chime-ha.service"
install -D -m 0644 "$here/default" "$pkg/etc/default/chime-ha"
share="$pkg/usr/share/chime-ha"
install -D -m 0644 "$root/packaging/systemd/keepalived.service" "$share/keepalived.service"
if [ -d "$root/packaging/monitoring" ]; then
    mkdir -p "$share/monitoring"
    find "$root/packaging/monitoring" -maxdepth 1 -type f \( -name '*.json' -o -name '*.yml' \) \
        ! -name '*test*' -exec install -m 0644 {} "$share/monitoring/" \;
fi
doc="$pkg/usr/share/doc/chime-ha"
mkdir -p "$doc/examples"
for f in README.md docs/operations.md docs/config.md docs/packaging.md docs/migration.md; do
    [ -f "$root/$f" ] && install -m 0644 "$root/$f" "$doc/"
done
install -m 0644 "$root"/examples/seed/*.conf "$doc/examples/"
install -m 0644 "$here/copyright" "$doc/copyright"
printf 'chime-ha (%s) unstable; urgency=medium\n\n  * Built from the chime-ha wheel by packaging/deb/build.sh.\n\n -- chime-ha maintainers <root@localhost>  %s\n' \
    "$debver" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" | gzip -9n >"$doc/changelog.Debian.gz"

mkdir -p "$pkg/DEBIAN"
next_minor=$(/usr/bin/python3 -c 'import sys; print(f"3.{sys.version_info[1] + 1}")')
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@PYMIN@/$target_minor/" -e "s/@PYNEXT@/$next_minor/" "$here/control.in" >"$pkg/DEBIAN/control"
echo /etc/default/chime-ha >"$pkg/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$pkg/DEBIAN/$s"; done
deb="$out/chime-ha_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
