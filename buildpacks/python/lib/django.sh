# shellcheck shell=bash
# Django's collectstatic, run at build time as Heroku does, so the slug carries the static files.

# Config vars that would change how the build itself runs rather than configure the app.
BUILD_CONTROL_VARS='^(PATH|HOME|PYTHONHOME|PYTHONPATH|PYTHONSTARTUP|BASH_ENV|ENV|IFS|SHELLOPTS|LD_[A-Z_]*)$'

django_is_installed() {
	local build_dir=$1 venv_dir=$2
	env -C "$build_dir" "$venv_dir/bin/python" -c \
		'import importlib.util, sys; sys.exit(importlib.util.find_spec("django") is None)' \
		2>/dev/null
}

# Settings modules usually read config vars (SECRET_KEY, STATIC_ROOT...), so collectstatic gets
# the app's config, minus the variables that control the build.
collectstatic_env() {
	local env_dir=$1 file name
	COLLECTSTATIC_ENV=(PYTHONUNBUFFERED=1)
	[[ -n $env_dir && -d $env_dir ]] || return 0
	for file in "$env_dir"/*; do
		name=${file##*/}
		[[ -f $file && $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ && ! $name =~ $BUILD_CONTROL_VARS ]] || continue
		COLLECTSTATIC_ENV+=("$name=$(<"$file")")
	done
}

run_collectstatic() {
	local build_dir=$1 venv_dir=$2 env_dir=$3
	[[ -f $build_dir/manage.py ]] || return 0
	django_is_installed "$build_dir" "$venv_dir" || return 0
	if [[ -n $env_dir && -e $env_dir/DISABLE_COLLECTSTATIC ]]; then
		puts_sub "Skipping collectstatic (DISABLE_COLLECTSTATIC is set)"
		return 0
	fi
	collectstatic_env "$env_dir"
	puts_sub "Running: python manage.py collectstatic --noinput"
	local status
	env -C "$build_dir" "${COLLECTSTATIC_ENV[@]}" PATH="$venv_dir/bin:$PATH" \
		"$venv_dir/bin/python" manage.py collectstatic --noinput 2>&1 | indent && return 0 ||
		status=${PIPESTATUS[0]}
	die "collectstatic failed (exit status $status); its output is above." \
		"Fix it, or set the config var DISABLE_COLLECTSTATIC=1 to skip it."
}
