# shellcheck shell=bash
# Installing the app's dependencies into a fresh virtualenv, with uv when it is on PATH and with
# the interpreter's own venv + pip otherwise.

# Package index settings are the only config vars the installer sees: they are needed to reach
# a private index, and handing the whole app config to a build tool would let it change how the
# build itself runs.
INSTALLER_CONFIG_VARS=(UV_DEFAULT_INDEX UV_INDEX UV_INDEX_URL UV_EXTRA_INDEX_URL PIP_INDEX_URL PIP_EXTRA_INDEX_URL)

# Sets INSTALLER to uv or pip.
select_installer() {
	if command -v uv >/dev/null; then
		INSTALLER=uv
	elif [[ $DEPENDENCY_MANIFEST == uv.lock ]]; then
		die "This app has a uv.lock, which needs uv to install, and uv is not on PATH."
	else
		INSTALLER=pip
	fi
}

# Fills the associative array INSTALLER_ENV from the config vars in ENV_DIR.
read_installer_env() {
	local env_dir=$1 name
	declare -gA INSTALLER_ENV=()
	[[ -n $env_dir && -d $env_dir ]] || return 0
	for name in "${INSTALLER_CONFIG_VARS[@]}"; do
		[[ -f $env_dir/$name ]] && INSTALLER_ENV[$name]=$(<"$env_dir/$name")
	done
	return 0
}

# Runs a command with its output indented under the current step. A failure ends the build with
# the command's own output already shown and its exit status named.
run_indented() {
	local what=$1 status
	shift
	"$@" 2>&1 | indent && return 0 || status=${PIPESTATUS[0]}
	die "$what failed (exit status $status); its output is above."
}

installer_env_assignments() {
	local name
	INSTALLER_ASSIGNMENTS=()
	for name in "${!INSTALLER_ENV[@]}"; do
		INSTALLER_ASSIGNMENTS+=("$name=${INSTALLER_ENV[$name]}")
	done
}

# Builds $venv_dir from scratch for the app in $build_dir.
install_dependencies() {
	local build_dir=$1 venv_dir=$2 cache_dir=$3
	installer_env_assignments
	rm -rf "$venv_dir"
	case "$INSTALLER:$DEPENDENCY_MANIFEST" in
	uv:requirements.txt) install_requirements_with_uv "$build_dir" "$venv_dir" "$cache_dir" ;;
	uv:uv.lock) sync_project_with_uv "$build_dir" "$venv_dir" "$cache_dir" ;;
	pip:requirements.txt) install_requirements_with_pip "$build_dir" "$venv_dir" "$cache_dir" ;;
	esac
}

# The uv settings every call shares. UV_LINK_MODE=copy: the uv cache and the app are usually on
# different mounts, where uv's default (hard links) fails over to copying with a warning anyway.
# Bytecode is compiled at install time because a slug is read-only at run time: without the .pyc
# files every dyno start would compile the dependencies again (0.3 s for Flask + gunicorn here),
# while compiling costs under a second once and is then kept in the cached virtualenv.
# TLS is checked against the stack's certificate store, not uv's bundled one, so a site CA or
# an intercepting proxy that the host trusts is trusted by builds too (UV_NATIVE_TLS is the
# older spelling of UV_SYSTEM_CERTS).
uv_env() {
	local cache_dir=$1
	UV_ENV=(
		"UV_CACHE_DIR=$cache_dir/python/uv"
		UV_LINK_MODE=copy
		UV_PYTHON_DOWNLOADS=never
		UV_NO_PROGRESS=1
		UV_SYSTEM_CERTS=1
		UV_NATIVE_TLS=1
		"${INSTALLER_ASSIGNMENTS[@]}"
	)
}

# pip (before 24.2) trusts only its bundled certifi: point it at the stack's store, as for uv.
STACK_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
pip_env() {
	PIP_ENV=()
	if [[ -z ${PIP_CERT:-} && -f $STACK_CA_BUNDLE ]]; then
		PIP_ENV+=("PIP_CERT=$STACK_CA_BUNDLE")
	fi
	PIP_ENV+=("${INSTALLER_ASSIGNMENTS[@]}")
}

install_requirements_with_uv() {
	local build_dir=$1 venv_dir=$2 cache_dir=$3
	uv_env "$cache_dir"
	puts_sub "Installing requirements with uv"
	run_indented "Creating the virtualenv" \
		env -C "$build_dir" "${UV_ENV[@]}" uv venv --quiet --no-project --python "$PYTHON_BIN" "$venv_dir"
	run_indented "Installing requirements.txt with uv" \
		env -C "$build_dir" "${UV_ENV[@]}" uv pip install --python "$venv_dir/bin/python" \
		--compile-bytecode -r requirements.txt
}

sync_project_with_uv() {
	local build_dir=$1 venv_dir=$2 cache_dir=$3
	uv_env "$cache_dir"
	puts_sub "Installing dependencies from uv.lock with uv sync"
	run_indented "uv sync --frozen" \
		env -C "$build_dir" "${UV_ENV[@]}" "UV_PROJECT_ENVIRONMENT=$venv_dir" \
		uv sync --frozen --no-dev --compile-bytecode --python "$PYTHON_BIN" --project "$build_dir"
}

install_requirements_with_pip() {
	local build_dir=$1 venv_dir=$2 cache_dir=$3
	pip_env
	puts_sub "Installing requirements with pip (uv is not on PATH)"
	run_indented "Creating the virtualenv" "$PYTHON_BIN" -m venv "$venv_dir"
	run_indented "Installing requirements.txt with pip" \
		env -C "$build_dir" "${PIP_ENV[@]}" "$venv_dir/bin/python" -m pip install \
		--cache-dir "$cache_dir/python/pip" --disable-pip-version-check --no-input \
		--progress-bar off --root-user-action=ignore -r requirements.txt
}
