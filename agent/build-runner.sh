#!/usr/bin/env bash
# Runs inside the build sandbox: detect, compile and release with Heroku classic-API buildpacks.
#
#   /app        the app being built (BUILD_DIR)       /cache   this app's build cache (CACHE_DIR)
#   /env        one file per config var (ENV_DIR)      /waka/out   results for the agent
#
# WAKA_BUILDPACKS: buildpack dirs to run, all of them in order (the app's explicit list), or
# WAKA_DETECT_ORDER: buildpack dirs to try, the first that detects wins.
# Results: /waka/out/buildpacks (one name per line), /waka/out/release-N.yml (bin/release output).
set -uo pipefail

build_dir=/app
cache_dir=/cache
env_dir=/env
out_dir=/waka/out

fail() {
    echo " !     $*"
    exit 1
}

declare -a selected=()
declare -a names=()

if [[ -n "${WAKA_BUILDPACKS:-}" ]]; then
    for bp in $WAKA_BUILDPACKS; do
        [[ -x "$bp/bin/compile" ]] || fail "Buildpack $bp has no executable bin/compile."
        name=$("$bp/bin/detect" "$build_dir" 2>/dev/null) || name=$(basename "$bp")
        selected+=("$bp")
        names+=("$name")
    done
else
    declare -a tried=()
    for bp in ${WAKA_DETECT_ORDER:-}; do
        [[ -x "$bp/bin/detect" ]] || continue
        if name=$("$bp/bin/detect" "$build_dir" 2>/tmp/waka-detect.err); then
            selected=("$bp")
            names=("${name:-$(basename "$bp")}")
            break
        fi
        why=$(tr '\n' ' ' </tmp/waka-detect.err | cut -c1-300)
        tried+=("$(basename "$bp"): ${why:-did not match}")
    done
    if [[ ${#selected[@]} -eq 0 ]]; then
        echo " !     No default language could be detected for this app."
        echo " !     Looked for:"
        for line in "${tried[@]}"; do
            echo " !       $line"
        done
        echo " !     Add a Procfile, a dependency file such as requirements.txt, or set buildpacks."
        exit 1
    fi
fi

for i in "${!selected[@]}"; do
    bp=${selected[$i]}
    name=${names[$i]}
    "$bp/bin/compile" "$build_dir" "$cache_dir" "$env_dir"
    status=$?
    if [[ $status -ne 0 ]]; then
        fail "Push rejected, failed to compile $name app."
    fi
    # Multi-buildpack: what a buildpack exports is visible to the ones after it.
    if [[ -f "$bp/export" ]]; then
        # shellcheck disable=SC1091
        source "$bp/export"
    fi
    if [[ -x "$bp/bin/release" ]]; then
        "$bp/bin/release" "$build_dir" >"$out_dir/release-$i.yml" || fail "$name's bin/release failed."
    fi
    echo "$name" >>"$out_dir/buildpacks"
done
