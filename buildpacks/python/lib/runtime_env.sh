# shellcheck shell=bash
# The environment a dyno gets from this buildpack: dynos source $HOME/.profile.d/*.sh (HOME=/app)
# after the config vars are set, so every default below yields to a config var of the same name.

write_profile_script() {
	local build_dir=$1
	mkdir -p "$build_dir/.profile.d"
	cat >"$build_dir/.profile.d/python.sh" <<'PROFILE'
# Written by waka's Python buildpack.
export VIRTUAL_ENV="$HOME/.venv"
export PATH="$HOME/.venv/bin:$PATH"
# Unbuffered, so each line an app prints reaches the log stream when it is printed.
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-1}"
export LANG="${LANG:-C.UTF-8}"
# A PYTHONHOME would point the virtualenv's interpreter at the wrong standard library.
unset PYTHONHOME
PROFILE
}
