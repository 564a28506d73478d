#!/usr/bin/env bash
# Check the install a user gets, not the clone: build svdk's wheel, install
# it with its model extra (pinned by constraints.txt) into a fresh virtual
# environment in a temporary folder outside the repository, and run it from
# another folder. CI runs this after the tests; so can anyone:
#   bash scripts/wheel_check.sh
# It prints each check and "ok" or "FAILED: why", goes on past a failure and
# exits with status 1 if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3.11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
failed=0

check() {  # check WHAT WHY-IF-NOT COMMAND...: runs COMMAND, reports it, goes on
    local what=$1 why=$2
    shift 2
    if "$@"; then
        echo "wheel_check: $what: ok"
    else
        echo "wheel_check: $what: FAILED: $why"
        failed=1
    fi
}
one_error_line() { [ "$(wc -l <"$1")" -eq 1 ] && grep -q '^svdk: error: ' "$1"; }
no_traceback() { ! grep -q Traceback "$@"; }

echo "wheel_check: fresh venv and wheel in $work"
"$PYTHON" -m venv "$work/venv"
py=$work/venv/bin/python
svdk=$work/venv/bin/svdk
# Built from a copy without the clone's build outputs: an old build/ or
# *.egg-info would put files into the wheel that the configuration no longer
# selects.
mkdir "$work/src"
tar -C "$repo" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$work/src" -xf -
"$py" -m pip wheel --quiet --no-deps -w "$work/dist" "$work/src"
wheel=$(echo "$work"/dist/svdk-*.whl)
echo "wheel_check: built $(basename "$wheel")"
"$py" -m pip install --quiet -c "$repo/constraints.txt" "$wheel[model]"

run=$work/run   # not the repository: only the installed svdk can be imported here
mkdir "$run"
cd "$run"

# The version the wheel was built with (pyproject reads svdk.__version__).
expected=$(basename "$wheel" | cut -d- -f2)
got=$("$py" -c 'import svdk; print(svdk.__version__)')
check "import svdk; svdk.__version__ is the wheel's version $expected" "got $got" [ "$got" = "$expected" ]

where=$("$py" -c 'import svdk; print(svdk.__file__)')
check "svdk is imported from the venv, not the clone" "from $where" [ "${where#"$work/venv/"}" != "$where" ]

stray=$("$py" -c '
import importlib.util
print(" ".join(m for m in ("demo", "hub", "training") if importlib.util.find_spec(m)))')
check "demo, hub and training are not installed" "importable: $stray" [ -z "$stray" ]

echo "wheel_check: \$ svdk compress example:astronaut --quality ssim:0.9 --policy cnn -o a.svdk"
status=0
out=$("$svdk" compress example:astronaut --quality ssim:0.9 --policy cnn -o a.svdk 2>"$work/err") || status=$?
echo "$out"
check "it exits with status 0" "status $status; stderr ends: $(tail -n 3 "$work/err")" [ "$status" -eq 0 ]
check "it wrote a.svdk" "no a.svdk, or empty" [ -s a.svdk ]
check "its output names the rank predictor shipped with svdk" "no 'shipped with svdk' in it" \
    grep -q 'shipped with svdk' <<<"$out"
check "the model extra predicts with LiteRT" "no 'LiteRT' in it" grep -q 'LiteRT' <<<"$out"
heavy=$("$py" -c '
import importlib.util
print(" ".join(m for m in ("tensorflow", "keras") if importlib.util.find_spec(m)))')
check "the model extra installs no TensorFlow or Keras" "installed: $heavy" [ -z "$heavy" ]

echo "wheel_check: \$ touch empty.png; svdk compress empty.png"
touch empty.png
status=0
"$svdk" compress empty.png >"$work/out" 2>"$work/err" || status=$?
cat "$work/err"
check "it exits with status 1" "status $status" [ "$status" -eq 1 ]
check "stderr is exactly one line starting 'svdk: error: '" "stderr has $(wc -l <"$work/err") lines" \
    one_error_line "$work/err"
check "no traceback" "a traceback was printed" no_traceback "$work/err" "$work/out"

echo "wheel_check: $SECONDS s"
exit $failed
